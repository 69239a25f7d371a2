"""Redis frozen (SIGSTOP) for 10 s during uploads, then thawed (SIGCONT).

Clients give up on requests that hang and retry; once Redis answers again every
upload must move on within seconds, and finish with its own bytes. Runs with the
default lock timeout (30 s), as deployed.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.faults.conftest import check, count
from tests.faults.harness import Service, Uploaders, check_outcomes

pytestmark = pytest.mark.fault
TEST = "tests/faults/test_redis_freeze.py"
FREEZE = 10.0
RECOVERY_TARGET = 5.0  # seconds from the thaw to the next accepted chunk of every upload


@pytest.fixture(scope="module")
def run(tmp_path_factory, fault_rows):
    wanted = count(1, 3)
    rnd = random.Random(10)
    with Service(tmp_path_factory.mktemp("freeze"), lock_timeout=None) as svc:
        uploads = Uploaders(
            svc,
            3,
            size=lambda r: r.randint(2 << 20, 3 << 20),
            chunk_size=256 << 10,
            rate=512 << 10,
            timeout=(3.0, 5.0),
            deadline=300,
            seed=10,
        ).start()
        for _ in range(wanted):
            time.sleep(rnd.uniform(1.0, 2.0))
            svc.redis.freeze()
            time.sleep(FREEZE)
            svc.redis.thaw()
            for client in uploads.clients:
                client.mark("thaw")
            time.sleep(RECOVERY_TARGET + 1)
        outcomes = uploads.stop()
        tally = check_outcomes(svc, outcomes)
    recoveries = [r for o in outcomes for r in o.recoveries]
    slowest = max(recoveries, default=0.0)
    checks = {
        f"every upload moves on within {RECOVERY_TARGET:.0f} s of the thaw": check(
            slowest <= RECOVERY_TARGET,
            f"slowest: {slowest:.1f} s after the thaw; "
            f"{tally.answers.get((409, 'locked'), 0)} answers 409 locked",
            "issue 8 part 3, a lock request after its client gave up (nobyte)",
        )
    }
    fault_rows.record(
        "redis-freeze",
        fault=f"Redis frozen (SIGSTOP) for {FREEZE:.0f} s, then thawed",
        injected=wanted,
        tally=tally,
        checks=checks,
        extra={"slowest recovery after the thaw (s)": round(slowest, 1)},
        test=TEST,
    )
    return tally, slowest


def test_redis_frozen_during_uploads(run):
    tally, _ = run
    assert tally.ok, tally.problems
    assert tally.non_json == 0 and tally.http_500 == 0, tally.problems


def test_uploads_move_on_soon_after_the_thaw(run):
    _, slowest = run
    assert slowest <= RECOVERY_TARGET
