"""The network misbehaves: a FaultProxy between the clients and gunicorn, and another between
gunicorn (and the Celery worker) and Redis, delays, throttles, black-holes and resets
connections in the middle of uploads."""

from __future__ import annotations

import random
import time
import zlib
from dataclasses import dataclass

import pytest

from tests.faults.conftest import check, count
from tests.faults.harness import Service, Uploaders, check_outcomes
from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.fault
TEST = "tests/faults/test_proxy.py"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with Service(
        tmp_path_factory.mktemp("proxy"), client_proxy=True, redis_proxy=True, lock_timeout=2
    ) as svc:
        yield svc


def delay(proxy: FaultProxy, rnd: random.Random, uploads: Uploaders) -> None:
    proxy.set_delay(rnd.uniform(0.05, 0.3))
    proxy.set_rate(rnd.choice([None, 256 << 10, 1 << 20]))
    time.sleep(rnd.uniform(2.0, 4.0))


def drop(proxy: FaultProxy, rnd: random.Random, uploads: Uploaders) -> None:
    """Nothing gets through for a while (longer than the clients' timeouts); then the link
    comes back, or the connections are found dead."""
    proxy.blackhole()
    time.sleep(rnd.uniform(2.0, 8.0))
    if rnd.random() < 0.5:
        proxy.reset_all()


def reset(proxy: FaultProxy, rnd: random.Random, uploads: Uploaders) -> None:
    """RST every connection, at a moment a chunk body is on its way."""
    deadline = time.monotonic() + 10
    while not uploads.mid_body(rnd.randint(1, 128) << 10) and time.monotonic() < deadline:
        time.sleep(0.002)
    if rnd.random() < 0.3:
        proxy.reset_after(rnd.randint(1, 300) << 10)  # also cut the next connections mid-stream
        time.sleep(rnd.uniform(0.5, 2.0))
    proxy.reset_all()


@dataclass
class Row:
    link: str  # "client" or "redis"
    inject: object
    fault: str
    short: int
    full: int


ROWS = {
    "client-delay": Row("client", delay, "client link delayed (50-300 ms) and throttled", 1, 5),
    "client-drop": Row("client", drop, "client link black-holed for 2-8 s", 1, 10),
    "client-reset": Row("client", reset, "client connections reset mid-chunk", 2, 30),
    "redis-delay": Row("redis", delay, "Redis link delayed (50-300 ms) and throttled", 1, 5),
    "redis-drop": Row("redis", drop, "Redis link black-holed for 2-8 s", 1, 10),
    "redis-reset": Row("redis", reset, "Redis connections reset mid-request", 2, 30),
}


@pytest.mark.parametrize("row_id", list(ROWS))
def test_network_faults(svc, fault_rows, row_id):
    row = ROWS[row_id]
    wanted = count(row.short, row.full)
    rnd = random.Random(row_id)
    proxy = svc.client_proxy if row.link == "client" else svc.redis_proxy
    worker_exits = 0
    svc.wait_healthy()
    uploads = Uploaders(
        svc,
        2,
        size=lambda r: r.randint(1 << 20, 2 << 20),
        chunk_size=256 << 10,
        rate=1 << 20,
        timeout=(3.0, 5.0),
        deadline=240,
        seed=zlib.crc32(row_id.encode()) % 1000,
    ).start()
    try:
        for _ in range(wanted):
            time.sleep(rnd.uniform(0.3, 1.5))
            row.inject(proxy, rnd, uploads)
            proxy.heal()
            worker_exits += svc.supervise_worker()
    finally:
        proxy.heal()
    outcomes = uploads.stop()
    worker_exits += svc.supervise_worker()
    tally = check_outcomes(svc, outcomes)
    checks = {}
    if row.link == "redis":
        checks["the Celery worker survives"] = check(
            worker_exits == 0, f"the worker exited {worker_exits} time(s)", "issue 8 part 2 (procs)"
        )
    fault_rows.record(
        row_id,
        fault=row.fault,
        injected=wanted,
        tally=tally,
        checks=checks,
        test=f"'{TEST}::test_network_faults[{row_id}]'",
    )
    assert tally.ok, tally.problems
    assert tally.non_json == 0 and tally.http_500 == 0, tally.problems
