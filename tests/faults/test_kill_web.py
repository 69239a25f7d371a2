"""kill -9 of gunicorn workers in the middle of a chunk; the client retries and resyncs."""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.faults.conftest import count
from tests.faults.harness import Service, Uploaders, check_outcomes

pytestmark = pytest.mark.fault
TEST = "tests/faults/test_kill_web.py"


@pytest.fixture(scope="module")
def run(tmp_path_factory, fault_rows):
    wanted = count(3, 50)
    rnd = random.Random(8)
    kills, recoveries = 0, []
    with Service(tmp_path_factory.mktemp("kill-web"), lock_timeout=2) as svc:
        # One client at a time, so the worker holding a client connection is the one reading it.
        # Chunks larger than the server's 1 MiB block, so that some kills land after a block
        # was written (bytes past the recorded offset) and some before.
        uploads = Uploaders(
            svc,
            1,
            size=lambda r: r.randint(3 << 20, 6 << 20),
            chunk_size=2 << 20,
            rate=4 << 20,
            deadline=120,
            seed=81,
        ).start()
        client = uploads.clients[0]
        give_up = time.monotonic() + 120 + 12 * wanted
        strike_at = rnd.randint(64 << 10, (2 << 20) - (64 << 10))
        while kills < wanted and time.monotonic() < give_up:
            if not (uploads.mid_body(strike_at) and client.accepted_since("kill")):
                time.sleep(0.002)
                continue
            victim = svc.web_worker_serving()
            if victim is None or not client.in_body.is_set():
                continue
            victim.send_signal(signal.SIGKILL)
            client.mark("kill")
            kills += 1
            strike_at = rnd.randint(64 << 10, (2 << 20) - (64 << 10))
            time.sleep(rnd.uniform(0.2, 1.0))
        outcomes = uploads.stop()
        for o in outcomes:
            recoveries += o.recoveries
        tally = check_outcomes(svc, outcomes)
    fault_rows.record(
        "web-kill",
        fault="kill -9 of a gunicorn worker while it reads a chunk",
        injected=kills,
        tally=tally,
        extra={"slowest recovery (s)": round(max(recoveries, default=0), 1)},
        test=TEST,
    )
    return wanted, kills, tally


def test_web_worker_killed_mid_chunk(run):
    wanted, kills, tally = run
    assert kills == wanted
    assert tally.ok, tally.problems
    assert tally.http_500 == 0 and tally.non_json == 0, tally.problems
