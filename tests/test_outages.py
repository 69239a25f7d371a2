"""Processes that come back: Redis restarts and outages, and dead processes of `make run`.

Each test runs its own redis-server (tests/support/redis_server.py): it is stopped,
killed, emptied and frozen here, which the shared Redis must never be.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support.processes import (
    REPO,
    SiteProcess,
    WorkerProcess,
    free_port,
    live_env,
    wait_for,
)
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.live, pytest.mark.fault, pytest.mark.slow]

CHUNK = 64 * 1024


def procfile_worker_options() -> list[str]:
    """The options the deployed worker runs with: what follows `celery -A tasks worker`."""
    line = next(
        line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("worker:")
    )
    args = shlex.split(line.split(":", 1)[1])
    assert args[:4] == ["celery", "-A", "tasks", "worker"], args
    return args[4:]


def send_upload(url: str, data: bytes, *, complete: bool = True) -> str:
    upload_id = None
    with requests.Session() as http:
        for start in range(0, len(data), CHUNK):
            part = data[start : start + CHUNK]
            r = http.put(
                f"{url}/upload/{upload_id}/" if upload_id else f"{url}/upload/",
                data=part,
                headers={
                    "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}",
                    "Content-Type": "application/octet-stream",
                    "Content-Disposition": 'attachment; filename="scan.bin"',
                },
                timeout=30,
            )
            assert r.status_code == 200, r.text
            upload_id = r.json()["upload_id"]
        if complete:
            r = http.post(
                f"{url}/upload/{upload_id}/",
                json={"md5": hashlib.md5(data).hexdigest()},
                timeout=30,
            )
            assert r.status_code == 200, r.text
    return upload_id


def status_of(url: str, upload_id: str) -> dict:
    r = requests.get(f"{url}/upload/{upload_id}/", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def wait_complete(url: str, upload_id: str, data: bytes, media_root: Path, timeout: float = 60):
    seen = wait_for(
        lambda: (s := status_of(url, upload_id))["status"] == "complete" and s,
        timeout=timeout,
        message=f"upload {upload_id} complete",
    )
    assert (media_root / seen["final_name"]).read_bytes() == data


def healthy(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.close()


# -- the web: 503 during an outage, serving again right after --------------------------------------
def timed(call):
    began = time.monotonic()
    answer = call()
    return answer, time.monotonic() - began


def assert_unavailable(answer: requests.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["code"] == "store_unavailable"


def test_the_web_answers_503_during_an_outage_and_serves_again_after(tmp_path, redis_server):
    env = live_env(
        tmp_path,
        redis_url=redis_server.url,
        CHUNKY_ALLOW_ANONYMOUS="1",
        CHUNKY_REDIS_TIMEOUT_SECONDS="1",
        CHUNKY_REDIS_CONNECT_TIMEOUT_SECONDS="1",
    )
    with SiteProcess(env) as site:
        upload_id = send_upload(site.url, os.urandom(CHUNK), complete=False)
        get = lambda: requests.get(f"{site.url}/upload/{upload_id}/", timeout=20)  # noqa: E731

        # Down: every request is a quick 503 in JSON, the health check fails.
        redis_server.stop()
        for call in (
            get,
            lambda: requests.put(
                f"{site.url}/upload/",
                data=b"x",
                headers={"Content-Range": "bytes 0-0/2"},
                timeout=20,
            ),
        ):
            answer, took = timed(call)
            assert_unavailable(answer)
            assert took < 2.5, f"a 503 took {took:.1f} s"
        assert not healthy(site.url)

        # Back, with its data: the pooled connections Redis closed are replaced, not reported.
        redis_server.start()
        answer = wait_for(lambda: (a := get()).status_code == 200 and a, timeout=5, message="200")
        assert answer.json()["offset"] == CHUNK

        # Frozen: a reply that never comes ends in a 503 after the socket timeout, not never.
        redis_server.freeze()
        try:
            answer, took = timed(get)
            assert_unavailable(answer)
            assert took < 2.5, f"a 503 took {took:.1f} s with a 1 s socket timeout: retried?"
        finally:
            redis_server.thaw()
        wait_for(lambda: get().status_code == 200, timeout=5, message="200 after the freeze")


# -- the worker: Redis restarted under it, then a new upload goes through ----------------------------
RESTARTS = [  # (seconds down, how)
    (0.5, "stop"),
    (3, "kill"),  # SIGKILL, data kept (append-only file)
    (0.5, "wipe"),  # SIGKILL, comes back empty: queues and bindings are gone
    (15, "stop"),
]


def test_the_worker_rides_out_redis_restarts_and_finishes_a_new_upload(tmp_path, redis_server):
    env = live_env(tmp_path, redis_url=redis_server.url, CHUNKY_ALLOW_ANONYMOUS="1")
    media_root = Path(env["MEDIA_ROOT"])
    with (
        SiteProcess(env) as site,
        WorkerProcess(env, options=procfile_worker_options(), concurrency=2) as worker,
    ):
        pid = worker.proc.pid
        for down, how in RESTARTS:
            # A finalization queued just before Redis goes away, as happens in real life.
            data = os.urandom(3 * CHUNK)
            send_upload(site.url, data)
            redis_server.restart(down, kill=how == "kill", wipe=how == "wipe")
            wait_for(lambda: healthy(site.url), timeout=5, message="the site healthy again")
            assert worker.proc.poll() is None, worker.log_text()[-3000:]

        data = os.urandom(5 * CHUNK + 17)
        wait_complete(site.url, send_upload(site.url, data), data, media_root)
        assert worker.proc.pid == pid and worker.proc.poll() is None
        log = worker.log_text()
    # The errors that come from a bootstep touching the closed connection (see the README,
    # "Redis restarts and the worker"): none, not even the recovered ones.
    for bad in ("Unrecoverable error", "AttributeError", "Error on restarting"):
        assert bad not in log, log[log.index(bad) - 2000 : log.index(bad) + 2000]


# -- make run: a dead process comes back, the rest keep serving -------------------------------------
class RunSh:
    """``deploy/run.sh`` as a user starts it: REDIS_URL set, no SECRET_KEY."""

    def __init__(self, tmp_path: Path, redis_url: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DJANGO_SETTINGS_MODULE")
        }
        env.update(
            REDIS_URL=redis_url,
            PORT=str(self.port),
            WEB_CONCURRENCY="1",
            CHUNKY_VAR_DIR=str(tmp_path / "var"),
            CHUNKY_UPLOAD_DIR=str(tmp_path / "chunks"),
            MEDIA_ROOT=str(tmp_path / "media"),
            SQLITE_PATH=str(tmp_path / "db.sqlite3"),
            CHUNKY_FSYNC="0",
            CHUNKY_ALLOW_ANONYMOUS="1",
        )
        self.media_root = tmp_path / "media"
        self.log_path = tmp_path / "run.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(REPO / "deploy" / "run.sh")],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self, name: str) -> list[int]:
        return [
            int(p) for p in re.findall(rf"supervise: {name} started \(pid (\d+)\)", self.text())
        ]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        for pid in self.pids(r"\w+"):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_make_run_restarts_a_dead_worker_and_keeps_serving(tmp_path, redis_server):
    run = RunSh(tmp_path, redis_server.url)
    try:
        wait_for(lambda: healthy(run.url), timeout=60, message=f"make run serving:\n{run.text()}")
        wait_for(lambda: run.text().count(" ready.") == 1, timeout=60, message="the worker ready")
        [web], [worker], [beat] = run.pids("web"), run.pids("worker"), run.pids("beat")
        assert "development key" in run.text()

        os.kill(worker, signal.SIGKILL)  # the main Celery process, as in the report
        wait_for(lambda: len(run.pids("worker")) == 2, timeout=10, message="a new worker")
        assert f"worker (pid {worker}) exited with signal 9" in run.text()
        assert healthy(run.url) and alive(web) and alive(beat) and run.proc.poll() is None
        wait_for(lambda: run.text().count(" ready.") == 2, timeout=60, message="it is ready")

        data = os.urandom(3 * CHUNK + 5)
        wait_complete(run.url, send_upload(run.url, data), data, run.media_root)

        # gunicorn's master and beat: each comes back too; what it had started goes with it.
        os.kill(web, signal.SIGKILL)
        wait_for(lambda: len(run.pids("web")) == 2, timeout=10, message="a new web server")
        wait_for(lambda: healthy(run.url), timeout=30, message="serving again")
        os.kill(beat, signal.SIGKILL)
        wait_for(lambda: len(run.pids("beat")) == 2, timeout=10, message="a new beat")
        assert run.proc.poll() is None and alive(run.pids("worker")[1])
        web, beat = run.pids("web")[1], run.pids("beat")[1]

        # Ctrl-C: everything stops, cleanly, and nothing is left.
        run.proc.send_signal(signal.SIGINT)
        assert run.proc.wait(60) == 0, run.text()[-3000:]
        for pid in (web, beat, *run.pids("worker")):
            assert not alive(pid)
    finally:
        run.close()
