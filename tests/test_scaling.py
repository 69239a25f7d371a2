"""Horizontal scaling: two server processes, one shared upload directory, one Redis.

Nothing ties an upload to the process that created it: its state is in Redis and
its bytes are in the shared directory, so any server can take any chunk and a load
balancer needs no sticky sessions. These tests start two real gunicorn servers on
different ports and a real Celery worker, and send the chunks of one upload
alternately to the two servers.

Each server writes an access log (GUNICORN_ACCESSLOG=-), which is how the tests
prove that the requests really reached the server they were meant for.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.support.api import LiveApi
from tests.support.processes import (
    SiteProcess,
    WorkerProcess,
    live_env,
    read_signals,
    require_real_redis,
    wait_for,
)
from tests.test_concurrency import race, send_in_two_halves

pytestmark = [pytest.mark.live, pytest.mark.slow]

MiB = 1 << 20
_PUT_LINE = re.compile(r'"PUT /upload/(?:([0-9a-f]{32})/)? HTTP/1\.1" 200 ')


@pytest.fixture
def env(tmp_path):
    require_real_redis()
    # (tests/conftest.py deletes the keys of every live_env() at the end of the session)
    return live_env(tmp_path, GUNICORN_ACCESSLOG="-")


@pytest.fixture
def cluster(env):
    """Two servers sharing env (upload dir, media root, Redis prefix) and one worker."""
    with (
        SiteProcess(env, workers=1, threads=4, name="site-a") as a,
        SiteProcess(env, workers=1, threads=4, name="site-b") as b,
        WorkerProcess(env),
    ):
        assert a.port != b.port
        yield a, b


@dataclass
class Sent:
    """One chunk request: where it went and when, for the assertions."""

    port: int
    upload_id: str
    started: float
    ended: float


@dataclass
class Client:
    """A minimal chunk uploader that picks the server for every request."""

    servers: list[SiteProcess]
    sent: list[Sent] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.sessions = {s.port: requests.Session() for s in self.servers}

    def request(self, server: SiteProcess, method: str, path: str, **kwargs) -> requests.Response:
        return self.sessions[server.port].request(method, server.url + path, timeout=60, **kwargs)

    def put_chunk(
        self,
        server: SiteProcess,
        upload_id: str | None,
        data: bytes,
        start: int,
        total: int,
        filename: str,
        close: bool = False,
    ) -> requests.Response:
        path = f"/upload/{upload_id}/" if upload_id else "/upload/"
        headers = {
            "Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{filename}"',
        }
        if close:
            headers["Connection"] = "close"
        started = time.monotonic()
        response = self.request(server, "PUT", path, data=data, headers=headers)
        ended = time.monotonic()
        if response.status_code == 200:
            with self._lock:
                self.sent.append(Sent(server.port, response.json()["upload_id"], started, ended))
        return response

    def upload_alternating(
        self, data: bytes, chunk_size: int, filename: str, first: int = 0
    ) -> str:
        """Send chunk i to servers[(first + i) % 2]; returns the upload id."""
        upload_id = None
        for index, start in enumerate(range(0, len(data), chunk_size)):
            server = self.servers[(first + index) % len(self.servers)]
            chunk = data[start : start + chunk_size]
            response = self.put_chunk(server, upload_id, chunk, start, len(data), filename)
            assert response.status_code == 200, (server.port, response.text)
            body = response.json()
            upload_id = upload_id or body["upload_id"]
            assert body["upload_id"] == upload_id
            assert body["offset"] == start + len(chunk)
        assert upload_id is not None
        return upload_id

    def complete(self, server: SiteProcess, upload_id: str, md5: str) -> dict:
        response = self.request(server, "POST", f"/upload/{upload_id}/", json={"md5": md5})
        assert response.status_code == 200, response.text
        return response.json()

    def wait_complete(self, server: SiteProcess, upload_id: str, timeout: float = 60) -> dict:
        def status():
            response = self.request(server, "GET", f"/upload/{upload_id}/")
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["status"] in ("processing", "complete"), body
            return body if body["status"] == "complete" else None

        return wait_for(status, timeout=timeout, interval=0.1, message=f"{upload_id} to complete")


def put_lines(site: SiteProcess) -> list[str]:
    """The upload ids of the successful PUTs in a server's access log ('' for a create)."""
    return [m.group(1) or "" for m in _PUT_LINE.finditer(site.log_text())]


def completed_signals(env: dict, upload_id: str) -> list[dict]:
    return [
        s
        for s in read_signals(env)
        if s["signal"] == "upload_completed" and s["upload_id"] == upload_id
    ]


def assert_final_file(env: dict, status: dict, data: bytes) -> None:
    final = Path(env["MEDIA_ROOT"]) / status["final_name"]
    assert final.is_file(), f"{final} is missing"
    assert final.stat().st_size == len(data)
    assert hashlib.md5(final.read_bytes()).hexdigest() == hashlib.md5(data).hexdigest()
    # The chunk file was handed off: nothing of this upload is left in the shared directory.
    assert not list(Path(env["CHUNKY_UPLOAD_DIR"]).rglob(f"*{status['upload_id']}*"))


def test_chunks_alternate_between_two_servers(env, cluster):
    a, b = cluster
    data = os.urandom(24 * MiB)
    md5 = hashlib.md5(data).hexdigest()
    client = Client([a, b])

    def put(server: SiteProcess, start: int, upload_id: str | None) -> requests.Response:
        chunk = data[start : start + MiB]
        return client.put_chunk(server, upload_id, chunk, start, len(data), "scaled.bin")

    # The first half, chunk by chunk, alternating A, B, A, B...
    half = 12 * MiB
    upload_id = None
    for index, start in enumerate(range(0, half, MiB)):
        server = (a, b)[index % 2]
        response = put(server, start, upload_id)
        assert response.status_code == 200, response.text
        upload_id = upload_id or response.json()["upload_id"]
        assert response.json()["offset"] == start + MiB

    # Both servers see the same state, and B refuses a replay of the chunk A just took,
    # naming the offset A recorded: the offset lives in Redis, not in a process.
    for server in (a, b):
        status = client.request(server, "GET", f"/upload/{upload_id}/").json()
        assert (status["status"], status["offset"]) == ("uploading", half)
        assert status["size"] == len(data)
    # (Connection: close: the refusal comes before the body is read.)
    chunk = data[half - 2 * MiB : half - MiB]  # A took that one
    replay = client.put_chunk(
        b, upload_id, chunk, half - 2 * MiB, len(data), "scaled.bin", close=True
    )
    assert replay.status_code == 400, replay.text
    assert replay.json()["expected_offset"] == half

    # The second half, still alternating.
    for index, start in enumerate(range(half, len(data), MiB), start=half // MiB):
        server = (a, b)[index % 2]
        response = put(server, start, upload_id)
        assert response.status_code == 200, response.text
        assert response.json()["offset"] == start + MiB

    # The alternation really happened: by the client's record and by each server's own log.
    ports = [s.port for s in client.sent]
    assert len(ports) == 24
    assert ports == [(a.port, b.port)[i % 2] for i in range(24)]
    # gunicorn writes an access line just after the answer: give the last one a moment.
    wait_for(lambda: len(put_lines(a)) == 12 and len(put_lines(b)) == 12, message="the access logs")
    assert put_lines(a) == [""] + [upload_id] * 11
    assert put_lines(b) == [upload_id] * 12

    # Complete on A, watch it finish on B.
    done = client.complete(a, upload_id, md5)
    assert (done["status"], done["size"]) == ("processing", len(data))
    assert done["filename"] == "scaled.bin"
    status = client.wait_complete(b, upload_id)
    assert status["offset"] == status["size"] == len(data)
    on_a = client.request(a, "GET", f"/upload/{upload_id}/").json()
    assert (on_a["status"], on_a["final_name"]) == ("complete", status["final_name"])
    assert_final_file(env, status, data)

    # The worker sent upload_completed once, with the client's checksum.
    signals = wait_for(lambda: completed_signals(env, upload_id), message="upload_completed")
    assert len(signals) == 1
    assert signals[0]["checksum"] == md5
    assert signals[0]["size"] == len(data)


def test_two_servers_take_chunks_of_different_uploads_at_once(env, cluster):
    a, b = cluster
    client = Client([a, b])
    files = {f"file-{n}.bin": os.urandom((4 + n) * MiB + 12345 * n) for n in range(6)}
    chunk_size = 512 * 1024

    def one(item: tuple[int, tuple[str, bytes]]) -> tuple[str, dict]:
        n, (name, data) = item
        # Odd uploads start on B, even ones on A, so both servers are busy with
        # different uploads at the same time; each completes on one and is polled on the other.
        upload_id = client.upload_alternating(data, chunk_size, name, first=n % 2)
        done = client.complete((a, b)[n % 2], upload_id, hashlib.md5(data).hexdigest())
        assert done["status"] == "processing"
        return name, client.wait_complete((b, a)[n % 2], upload_id, timeout=120)

    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        results = dict(pool.map(one, enumerate(files.items())))

    assert set(results) == set(files)
    assert len({status["upload_id"] for status in results.values()}) == len(files)
    for name, status in results.items():
        assert status["filename"] == name
        assert_final_file(env, status, files[name])
        signals = wait_for(
            lambda s=status: completed_signals(env, s["upload_id"]), message="upload_completed"
        )
        assert len(signals) == 1
        assert signals[0]["checksum"] == hashlib.md5(files[name]).hexdigest()

    # Both servers took chunks of every upload...
    for site in (a, b):
        seen = {upload_id for upload_id in put_lines(site) if upload_id}
        assert seen == {status["upload_id"] for status in results.values()}
    # ...and requests for different uploads really overlapped in time on the two servers.
    on_a = [s for s in client.sent if s.port == a.port]
    on_b = [s for s in client.sent if s.port == b.port]
    assert any(
        x.upload_id != y.upload_id and x.started < y.ended and y.started < x.ended
        for x in on_a
        for y in on_b
    ), "no two chunks of different uploads were in flight on the two servers at once"


def test_racing_chunks_on_two_servers_share_one_lock(env, cluster):
    """The race of tests/test_concurrency.py, its requests spread over both servers:
    each server refuses `locked` while the other holds the upload's lock."""
    a, b = cluster
    senders = {a.port: send_in_two_halves(a.url), b.port: send_in_two_halves(b.url)}
    refused: Counter = Counter()

    def send(i, upload_id, body, content_range, barrier):
        server = (a, b)[i % 2]
        reply = senders[server.port](i, upload_id, body, content_range, barrier)
        if reply.status == 409 and reply.data["code"] == "locked":
            refused[server.port] += 1
        return reply

    rounds = race(
        lambda: LiveApi(a.url), send, Path(env["CHUNKY_UPLOAD_DIR"]), Path(env["MEDIA_ROOT"])
    )
    assert sum(1 for r in rounds if r["locked"]) >= len(rounds) // 2, rounds
    assert refused[a.port] >= 1 and refused[b.port] >= 1, refused
