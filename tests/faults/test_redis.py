"""Redis killed with kill -9 during uploads, and restarted: empty (every record lost), or with
its data (append-only file, fsync always). Uploads whose record was lost start over after a
JSON 404 and must never complete with other bytes; the others carry on."""

from __future__ import annotations

import random
import time

import pytest

from tests.faults.conftest import check, count
from tests.faults.harness import Service, Uploaders, check_outcomes

pytestmark = pytest.mark.fault
TEST = "tests/faults/test_redis.py"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with Service(tmp_path_factory.mktemp("redis"), persistent_redis=True, lock_timeout=2) as svc:
        yield svc


def restart_redis_under_uploads(svc: Service, *, empty: bool, wanted: int, seed: int):
    rnd = random.Random(seed)
    worker_exits, down = 0, []
    uploads = Uploaders(
        svc,
        3,
        size=lambda r: r.randint(1 << 20, 2 << 20),
        chunk_size=256 << 10,
        rate=1 << 20,
        deadline=240,
        seed=seed,
    ).start()
    for _ in range(wanted):
        time.sleep(rnd.uniform(1.0, 3.0))
        svc.redis.kill()
        pause = rnd.uniform(0.5, 3.0)
        time.sleep(pause)
        svc.redis.restart(empty=empty)
        down.append(pause)
        time.sleep(3)  # the worker reconnects, or exits
        worker_exits += svc.supervise_worker()
    time.sleep(2)
    outcomes = uploads.stop()
    worker_exits += svc.supervise_worker()
    return check_outcomes(svc, outcomes), worker_exits, down


def record(fault_rows, row_id, fault, wanted, tally, worker_exits, down, checks=None):
    checks = dict(checks or {})
    checks["the Celery worker survives a Redis restart"] = check(
        worker_exits == 0,
        f"the worker exited {worker_exits} time(s) and was started again by the test",
        "issue 8 part 2 (procs)",
    )
    fault_rows.record(
        row_id,
        fault=fault,
        injected=wanted,
        tally=tally,
        checks=checks,
        extra={"Redis down (s)": f"{min(down):.1f}-{max(down):.1f}"},
        test=TEST,
    )


def test_redis_killed_and_restarted_empty(svc, fault_rows):
    wanted = count(1, 5)
    tally, worker_exits, down = restart_redis_under_uploads(svc, empty=True, wanted=wanted, seed=1)
    lost_records = tally.answers.get((404, "not_found"), 0)
    record(
        fault_rows,
        "redis-empty",
        "Redis killed (kill -9) and restarted empty",
        wanted,
        tally,
        worker_exits,
        down,
        {
            "a lost record answers a JSON 404, and the upload starts over": check(
                tally.restarts == 0 or lost_records > 0,
                f"{tally.restarts} upload(s) started over after {lost_records} 404 answer(s)"
                f" ({tally.completed_then_lost} had completed before Redis lost the record)",
            )
        },
    )
    assert tally.ok, tally.problems
    assert tally.non_json == 0 and tally.http_500 == 0, tally.problems


def test_redis_killed_and_restarted_with_its_data(svc, fault_rows):
    wanted = count(1, 5)
    tally, worker_exits, down = restart_redis_under_uploads(svc, empty=False, wanted=wanted, seed=2)
    record(
        fault_rows,
        "redis-data",
        "Redis killed (kill -9) and restarted with its data (AOF, fsync always)",
        wanted,
        tally,
        worker_exits,
        down,
        {
            "no upload starts over when Redis kept its data": check(
                tally.restarts == 0, f"{tally.restarts} upload(s) started over"
            )
        },
    )
    assert tally.ok, tally.problems
    assert tally.restarts == 0
    assert tally.non_json == 0 and tally.http_500 == 0, tally.problems
