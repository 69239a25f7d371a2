"""Slow clients: connections that trickle a chunk body at 1 byte/s hold on while other
clients upload, ask for status and a slow-but-steady client uploads at 32 KB/s.

The deployed server (deploy/gunicorn.conf.py: 2 workers x 4 threads here) must keep
serving everyone else, and the trickling requests must record nothing.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time

import pytest
import requests

from tests.faults.conftest import FULL, check, count
from tests.faults.harness import Service, Uploaders, check_outcomes
from tests.support.processes import wait_for

pytestmark = pytest.mark.fault
TEST = "tests/faults/test_slow_clients.py"
STATUS_TARGET = 1.0  # seconds: a status read must not wait behind slow bodies
DURATION = 30.0 if FULL else 10.0
TRICKLE_TOTAL = 99_991  # the size trickled uploads declare, to tell them apart


class Trickle:
    """A PUT whose body arrives at one byte per second, for as long as the test runs."""

    def __init__(self, port: int, stop: threading.Event):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.stop = stop
        head = (
            f"PUT /upload/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {TRICKLE_TOTAL}\r\n"
            f"Content-Range: bytes 0-{TRICKLE_TOTAL - 1}/{TRICKLE_TOTAL}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        self.sock.sendall(head.encode())
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.wait(1.0):
                self.sock.sendall(b"x")
        except OSError:
            pass
        finally:
            self.sock.close()


def strays(svc: Service) -> list[str]:
    """Records of trickled uploads (which never sent a whole chunk), and files with no record."""
    r = svc.redis.client()
    recorded, found = set(), []
    for key in r.scan_iter(match=f"{svc.env['CHUNKY_TEST_KEY_PREFIX']}:*:upload"):
        upload_id = key.decode().split("{")[1].split("}")[0]
        recorded.add(upload_id)
        if int(r.hget(key, "size") or 0) == TRICKLE_TOTAL:
            found.append(f"record {upload_id}")
    for part in svc.chunk_dir().glob("*.part"):
        if part.name.removesuffix(".part") not in recorded:
            found.append(f"file {part.name}")
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory, fault_rows):
    n = count(20, 60)  # more than the 2 x 4 threads, however gunicorn spreads them
    latencies: list[float] = []
    with Service(tmp_path_factory.mktemp("slow"), workers=2, threads=4, lock_timeout=None) as svc:
        stop = threading.Event()
        trickles = [Trickle(svc.site.port, stop) for _ in range(n)]
        time.sleep(1.0)
        fast = Uploaders(
            svc, 2, size=1 << 20, chunk_size=256 << 10, deadline=DURATION + 5, seed=40
        ).start(once=True)
        steady = Uploaders(
            svc,
            1,
            size=256 << 10,
            chunk_size=64 << 10,
            rate=32 << 10,
            deadline=DURATION + 5,
            seed=42,
        ).start(once=True)
        end = time.monotonic() + DURATION
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                requests.get(f"{svc.base_url}/healthz", timeout=STATUS_TARGET * 5)
                latencies.append(time.monotonic() - started)
            except requests.RequestException:
                latencies.append(float("inf"))
            time.sleep(0.25)
        outcomes = fast.stop() + steady.stop()
        stop.set()
        for t in trickles:
            t.thread.join(5)
        tally = check_outcomes(svc, outcomes)
        try:  # a request that never got its whole body must leave no record and no file
            wait_for(lambda: not strays(svc), timeout=15)
        except AssertionError:
            pass
        stray = strays(svc)
    answered = sorted(latencies)
    p99 = answered[min(len(answered) - 1, int(len(answered) * 0.99))] if answered else float("inf")
    checks = {
        f"status answers within {STATUS_TARGET:.0f} s (p99) while slow clients trickle": check(
            p99 <= STATUS_TARGET,
            f"p99 {p99:.2f} s, median {statistics.median(answered):.2f} s over "
            f"{len(answered)} reads",
            "issue 8 part 1, slow clients starve the service (slow)",
        )
    }
    fault_rows.record(
        "slow-clients",
        fault=f"{n} connections trickling a chunk body at 1 byte/s for {DURATION:.0f} s",
        injected=n,
        tally=tally,
        checks=checks,
        extra={"status p99 (s)": round(p99, 2) if p99 != float("inf") else "timeout"},
        findings="issue 8 part 1 (slow): other uploads wait behind the slow bodies",
        test=TEST,
    )
    return tally, p99, stray


def test_uploads_go_on_beside_slow_clients(run):
    tally, _, _ = run
    assert tally.ok, tally.problems


def test_status_answers_beside_slow_clients(run):
    _, p99, _ = run
    assert p99 <= STATUS_TARGET


def test_trickling_requests_record_nothing(run):
    *_, stray = run
    assert stray == []
