"""kill -9 of the Celery worker (main process and pool) in the middle of the hand-off to the
final storage; a new worker, started as a supervisor would, finishes the upload."""

from __future__ import annotations

import random
import signal
import threading
import time

import pytest

from tests.faults.conftest import check, count
from tests.faults.harness import Service, check_outcomes
from tests.support.processes import wait_for

pytestmark = pytest.mark.fault
TEST = "tests/faults/test_kill_celery.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory, fault_rows):
    wanted = count(2, 20)
    rnd = random.Random(20)
    tmp = tmp_path_factory.mktemp("kill-celery")
    markers = tmp / "hand-offs"
    markers.mkdir()
    env = {
        "CHUNKY_TEST_FINAL_STORAGE": "tests.support.faultstorage.SlowStorage",
        "CHUNKY_TEST_SLOW_SAVE_MARKERS": str(markers),
        "CHUNKY_TEST_SLOW_SAVE_SECONDS": "1.5",
        "CELERY_VISIBILITY_TIMEOUT": "2",  # a message of a dead worker comes back after 2 s
        "CHUNKY_TEST_FINALIZE_LEASE": "2",  # and its finalization lease lapses as fast
    }
    kills, half_visible, outcomes, waits = 0, 0, [], []
    with Service(tmp, **env) as svc:
        for i in range(wanted):
            data = rnd.randbytes(rnd.randint(512 << 10, 3 << 19))
            client = svc.client(chunk_size=256 << 10, deadline=180, seed=i)
            result: dict = {}
            worker = threading.Thread(target=lambda: result.update(o=client.upload(data)))
            worker.start()
            marker = wait_for(
                lambda: next(markers.iterdir(), None), timeout=90, message="a hand-off to start"
            )
            upload_id = marker.name.split(".")[0]
            final = svc.media(f"chunky_redis/{upload_id}/data.bin")
            svc.worker.kill(signal.SIGKILL)  # the whole worker: main process and pool child
            killed_at = time.monotonic()
            kills += 1
            if final.exists() and final.stat().st_size < len(data):
                half_visible += 1
            svc.restart_worker()
            worker.join(240)
            outcome = result["o"]
            outcomes.append(outcome)
            waits.append(time.monotonic() - killed_at)
            for leftover in markers.iterdir():
                leftover.unlink()
        tally = check_outcomes(svc, outcomes)
    checks = {
        "no half-copied file at the final name": check(
            half_visible == 0,
            f"a partial file was visible at its final name after {half_visible} of {kills} kills",
            "issue 8 part 3 (nobyte)",
        )
    }
    fault_rows.record(
        "celery-kill",
        fault="kill -9 of the Celery worker in the middle of the hand-off",
        injected=kills,
        tally=tally,
        checks=checks,
        extra={"slowest kill-to-complete (s)": round(max(waits, default=0), 1)},
        test=TEST,
    )
    return wanted, kills, tally, half_visible


def test_celery_worker_killed_mid_hand_off(run):
    wanted, kills, tally, _ = run
    assert kills == wanted
    assert tally.ok, tally.problems


def test_no_half_copied_file_at_the_final_name(run):
    *_, half_visible = run
    assert half_visible == 0
