"""Slow clients must not starve the service (issue 8, part 1).

A few hundred connections send chunk bodies a byte at a time, as phones and
hotel Wi-Fi do, against a real gunicorn with the production configuration
(deploy/gunicorn.conf.py). Meanwhile /healthz and a status GET must answer and
a normal upload must complete byte for byte. Afterwards the slow clients that
finish have their chunk recorded exactly, and the ones that hang up change
nothing.

This is a correctness test, not a timing test: the timeouts are generous. It
fails with the old threaded worker: ``GUNICORN_WORKER_CLASS=gthread pytest
tests/test_slow_clients.py`` (2 workers x 4 threads are all held by the first
eight slow clients, so /healthz never answers). Latency is measured by
``make bench`` instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support.processes import (
    SiteProcess,
    WorkerProcess,
    live_env,
    require_real_redis,
    wait_for,
)

pytestmark = [pytest.mark.live, pytest.mark.slow]

SLOW = 240  # slow connections: far more than the old 2 x 4 threads, few enough for a shared box
HEAD = 16  # bytes each slow client's upload already has (sent fast)
BODY = 4096  # bytes its slow chunk declares; it trickles far fewer before the checks are done
PATIENCE = 60  # seconds any one answer may take on a loaded 2-core machine
MiB = 1 << 20


@pytest.fixture
def env(tmp_path):
    require_real_redis()
    return live_env(tmp_path)


class SlowClient:
    """An existing upload whose next chunk arrives a byte at a time over a raw socket."""

    def __init__(self, site: SiteProcess, session: requests.Session, index: int):
        self.head = os.urandom(HEAD)
        self.body = os.urandom(BODY)
        total = HEAD + BODY
        response = session.put(
            site.url + "/upload/",
            data=self.head,
            headers={
                "Content-Range": f"bytes 0-{HEAD - 1}/{total}",
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="slow-{index}.bin"',
            },
            timeout=PATIENCE,
        )
        assert response.status_code == 200, response.text
        self.upload_id = response.json()["upload_id"]
        self.sock = socket.create_connection(("127.0.0.1", site.port), timeout=PATIENCE)
        self.sock.sendall(
            (
                f"PUT /upload/{self.upload_id}/ HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{site.port}\r\n"
                f"Content-Range: bytes {HEAD}-{total - 1}/{total}\r\n"
                "Content-Type: application/octet-stream\r\n"
                f"Content-Length: {BODY}\r\n\r\n"
            ).encode()
        )
        self.sent = 0

    def trickle(self) -> None:
        self.sock.sendall(self.body[self.sent : self.sent + 1])
        self.sent += 1

    def finish(self, close: bool = True) -> bytes:
        """Send the rest at once; returns the answer."""
        self.sock.sendall(self.body[self.sent :])
        self.sent = BODY
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = self.sock.recv(65536)
            if not data:
                break
            answer += data
        if close:
            self.sock.close()
        return answer

    def hang_up(self) -> None:
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        self.sock.close()  # a reset, as a phone that lost its network


def upload(site: SiteProcess, data: bytes, chunk: int) -> str:
    upload_id = None
    with requests.Session() as session:
        for start in range(0, len(data), chunk):
            part = data[start : start + chunk]
            path = f"/upload/{upload_id}/" if upload_id else "/upload/"
            response = session.put(
                site.url + path,
                data=part,
                headers={
                    "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}",
                    "Content-Type": "application/octet-stream",
                    "Content-Disposition": 'attachment; filename="normal.bin"',
                },
                timeout=PATIENCE,
            )
            assert response.status_code == 200, response.text
            upload_id = response.json()["upload_id"]
        md5 = hashlib.md5(data).hexdigest()
        response = session.post(
            site.url + f"/upload/{upload_id}/", json={"md5": md5}, timeout=PATIENCE
        )
        assert response.status_code == 200, response.text
    assert upload_id
    return upload_id


def status(site: SiteProcess, upload_id: str) -> dict:
    response = requests.get(site.url + f"/upload/{upload_id}/", timeout=PATIENCE)
    assert response.status_code == 200, response.text
    return response.json()


def test_slow_clients_do_not_starve_the_service(env):
    with SiteProcess(env) as site, WorkerProcess(env):
        with requests.Session() as session:
            clients = [SlowClient(site, session, i) for i in range(SLOW)]
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(1.0):
                for client in clients:
                    client.trickle()

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            time.sleep(2)  # every slow request is inside the app, waiting for its body
            assert requests.get(site.url + "/healthz", timeout=PATIENCE).status_code == 200
            assert status(site, clients[0].upload_id)["offset"] == HEAD
            data = os.urandom(8 * MiB + 12345)
            upload_id = upload(site, data, 2 * MiB)
            done = wait_for(
                lambda: (s := status(site, upload_id))["status"] == "complete" and s,
                timeout=PATIENCE,
                message="the normal upload to complete",
            )
            final = Path(env["MEDIA_ROOT"]) / done["final_name"]
            assert final.read_bytes() == data
            assert all(c.sent < BODY for c in clients), "the slow clients were not slow enough"
        finally:
            stop.set()
            trickler.join()

        finishing, leaving = clients[: SLOW // 2], clients[SLOW // 2 :]
        for client in leaving:
            client.hang_up()
        for client in finishing:
            answer = client.finish()
            assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
            assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["offset"] == HEAD + BODY
        chunks = Path(env["CHUNKY_UPLOAD_DIR"])
        for client in finishing:
            assert status(site, client.upload_id)["offset"] == HEAD + BODY
            assert (chunks / f"{client.upload_id}.part").read_bytes() == client.head + client.body

        for client in leaving:
            assert status(site, client.upload_id)["offset"] == HEAD
            path = chunks / f"{client.upload_id}.part"
            assert path.read_bytes()[:HEAD] == client.head
        # Each one that hung up resumes at its recorded offset once the server has seen the
        # reset and let go of its lock (409 until then).
        for client in leaving[:10]:
            wait_for(
                lambda c=client: resume(site, c) == 200,
                timeout=PATIENCE,
                message="a hung-up upload to take its chunk again",
            )
            assert (chunks / f"{client.upload_id}.part").read_bytes() == client.head + client.body


def resume(site: SiteProcess, client: SlowClient) -> int:
    total = HEAD + BODY
    response = requests.put(
        site.url + f"/upload/{client.upload_id}/",
        data=client.body,
        headers={
            "Content-Range": f"bytes {HEAD}-{total - 1}/{total}",
            "Content-Type": "application/octet-stream",
        },
        timeout=PATIENCE,
    )
    assert response.status_code in (200, 409), response.text
    return response.status_code


def test_a_restart_does_not_wait_for_idle_keep_alive_connections(env):
    """gunicorn's gevent worker waits graceful_timeout (60 s) for connections between requests;
    the service's worker closes them at once, as the threaded worker did."""
    site = SiteProcess(env).start()
    try:
        sessions = [requests.Session() for _ in range(3)]
        for session in sessions:
            assert session.get(site.url + "/healthz", timeout=PATIENCE).status_code == 200
        started = time.monotonic()
        os.killpg(site.proc.pid, signal.SIGTERM)
        site.proc.wait(timeout=PATIENCE)
        assert time.monotonic() - started < 30
        log = site.log_text()
        assert "[ERROR]" not in log  # closed quietly
        assert "MonkeyPatchWarning" not in log  # the workers patched before anything used ssl
    finally:
        site.kill(signal.SIGKILL)
        site.stop()


def test_a_restart_closes_the_connection_of_a_request_in_progress(env):
    """A chunk still arriving at SIGTERM is served, answered with ``Connection: close`` and its
    connection closed, so it does not hold the restart for graceful_timeout as an idle one."""
    site = SiteProcess(env).start()
    try:
        with requests.Session() as session:
            client = SlowClient(site, session, 0)
            for _ in range(10):
                client.trickle()
            time.sleep(1)  # the worker has the request's head and is reading its body
            started = time.monotonic()
            os.killpg(site.proc.pid, signal.SIGTERM)
            time.sleep(1)  # the worker has begun to shut down
            answer = client.finish(close=False)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), answer
        assert b"connection: close" in head.lower(), head
        assert json.loads(body)["offset"] == HEAD + BODY
        client.sock.settimeout(PATIENCE)
        assert client.sock.recv(1) == b""  # the server closed the connection
        client.sock.close()
        site.proc.wait(timeout=PATIENCE)
        assert time.monotonic() - started < 30
    finally:
        site.kill(signal.SIGKILL)
        site.stop()


def children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(child) for child in f.read().split()}


def test_a_restart_while_a_worker_boots_does_not_wait_for_it(env):
    """A SIGTERM that reached a worker before its own handlers were in place went to the master's
    handler, inherited through fork, and was lost: the master waited graceful_timeout (60 s) for
    that worker and then killed it."""
    site = SiteProcess(env, workers=1).start()
    try:
        before = children(site.proc.pid)
        os.kill(site.proc.pid, signal.SIGTTIN)  # one worker more: the master forks it now
        deadline = time.monotonic() + PATIENCE
        while not children(site.proc.pid) - before:
            assert time.monotonic() < deadline, "the master forked no new worker"
            time.sleep(0.001)
        started = time.monotonic()
        os.killpg(site.proc.pid, signal.SIGTERM)  # the new worker is still booting
        site.proc.wait(timeout=PATIENCE)
        assert time.monotonic() - started < 30
    finally:
        site.kill(signal.SIGKILL)
        site.stop()
