"""Real server and worker processes for end-to-end tests, over real sockets.

``SiteProcess`` runs the bundled site under its production server (gunicorn,
configured by deploy/gunicorn.conf.py); ``WorkerProcess`` runs
``celery -A tasks worker``. Both use tests.live_settings and the environment
built by ``live_env()``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
import requests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REAL_REDIS_URL = os.environ.get("CHUNKY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
LIVE_PREFIXES: list[
    str
] = []  # key prefixes (upload records, Celery queues) handed out this session


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port; from CHUNKY_TEST_PORTS ("7600-7699") when set, so that runs sharing a
    machine keep to their own ranges."""
    first, _, last = os.environ.get("CHUNKY_TEST_PORTS", "").partition("-")
    candidates = range(int(first), int(last) + 1) if first and last else [0]
    for port in candidates:
        if port in _HANDED_OUT:
            continue  # free now, but maybe about to be bound by the process it was given to
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            if port:
                _HANDED_OUT.add(port)
            return s.getsockname()[1]
    raise RuntimeError(f"no free port in CHUNKY_TEST_PORTS={os.environ['CHUNKY_TEST_PORTS']}")


def require_real_redis() -> None:
    """Fail the test (not skip it) when the real Redis does not answer."""
    try:
        redis.Redis.from_url(REAL_REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.fail(f"the real Redis at {REAL_REDIS_URL} does not answer (make test starts it)")


def live_env(
    tmp_path: Path, *, redis_url: str = REAL_REDIS_URL, broker_url: str | None = None, **extra: str
) -> dict:
    """Environment for site and worker processes that share one upload directory and Redis."""
    tag = uuid.uuid4().hex[:12]
    LIVE_PREFIXES.append(f"chunky-test-{tag}")
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.live_settings",
        PYTHONPATH=os.pathsep.join([str(REPO / "deploy"), str(REPO)]),
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=broker_url or redis_url,
        CHUNKY_VAR_DIR=str(tmp_path / "var"),
        CHUNKY_UPLOAD_DIR=str(tmp_path / "chunks"),
        MEDIA_ROOT=str(tmp_path / "media"),
        SQLITE_PATH=str(tmp_path / "db.sqlite3"),
        SECRET_KEY="live-tests",
        DEBUG="0",
        CHUNKY_FSYNC="0",
        CHUNKY_TEST_KEY_PREFIX=f"chunky-test-{tag}",
        CHUNKY_TEST_QUEUE=f"chunky-test-{tag}",
        CHUNKY_TEST_SIGNAL_LOG=str(tmp_path / "signals.jsonl"),
        CHUNKY_LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


class _Process:
    proc: subprocess.Popen | None = None
    log_path: Path

    def _spawn(self, args: list[str], env: dict) -> None:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the server and its worker processes)."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)

    def stop(self, grace: float = 15) -> None:
        """SIGTERM the process group; SIGKILL it if it has not exited after ``grace`` seconds."""
        if self.proc and self.proc.poll() is None and not _terminated(self.proc, grace):
            self.kill(signal.SIGKILL)
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self):
        if self.proc is not None and self.proc.poll() is None:
            return self  # already started
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()


def _terminated(proc: subprocess.Popen, grace: float) -> bool:
    """True when the process group's leader exited within ``grace`` seconds of SIGTERM."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    try:
        proc.wait(timeout=grace)
        return True
    except subprocess.TimeoutExpired:
        return False


class SiteProcess(_Process):
    def __init__(
        self,
        env: dict,
        *,
        port: int | None = None,
        workers: int = 2,
        threads: int = 4,
        name: str = "site",
    ):
        self.env = dict(env)
        self.port = port or free_port()
        self.env.update(
            PORT=str(self.port),
            HOST="127.0.0.1",
            WEB_CONCURRENCY=str(workers),
            GUNICORN_THREADS=str(threads),
        )
        self.log_path = Path(env["CHUNKY_VAR_DIR"]).parent / f"{name}-{self.port}.log"
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> SiteProcess:
        self._spawn(
            [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", "chunky_site.wsgi"], self.env
        )
        deadline = time.monotonic() + 60  # a loaded 2-core machine can be slow to boot workers
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited:\n{self.log_text()}")
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return self
            except requests.RequestException:
                pass  # not listening yet, or still booting
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not become healthy:\n{self.log_text()}")


# What the tests add to `celery worker` by default; options= replaces it (e.g. with the Procfile's).
QUIET_WORKER = ["--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]


class WorkerProcess(_Process):
    def __init__(
        self,
        env: dict,
        *,
        concurrency: int = 1,
        name: str = "worker",
        options: list[str] | None = None,
    ):
        self.env = dict(env)
        self.concurrency = concurrency
        self.options = QUIET_WORKER if options is None else options
        self.log_path = Path(env["CHUNKY_VAR_DIR"]).parent / f"{name}-{uuid.uuid4().hex[:6]}.log"

    def start(self) -> WorkerProcess:
        queue = self.env["CHUNKY_TEST_QUEUE"]
        args = [
            str(BIN / "celery"),
            "-A",
            "tasks",
            "worker",
            *self.options,
            "--pool=prefork",
            f"--concurrency={self.concurrency}",
            "-Q",
            queue,
            "-n",
            f"{queue}-{uuid.uuid4().hex[:6]}@%h",
        ]
        self._spawn(args, self.env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{self.log_text()}")
            if " ready." in self.log_text():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the worker did not become ready:\n{self.log_text()}")


class BeatProcess(_Process):
    """``celery -A tasks beat`` (the bundled schedule runs the sweeper)."""

    def __init__(self, env: dict):
        self.env = dict(env)
        var = Path(env["CHUNKY_VAR_DIR"]).parent
        self.log_path = var / "beat.log"
        self.schedule = var / "celerybeat-schedule"

    def start(self) -> BeatProcess:
        args = [str(BIN / "celery"), "-A", "tasks", "beat", "--loglevel=INFO"]
        self._spawn([*args, f"--schedule={self.schedule}"], self.env)
        return self


def queue_finalize(env: dict, upload_id: str) -> None:
    """Queue ``finalize_upload`` for the upload as a new task (its own id), from outside."""
    import json

    call = subprocess.run(
        [str(BIN / "celery"), "-A", "tasks", "call", "chunky_redis.finalize_upload",
         "--args", json.dumps([upload_id]), "--queue", env["CHUNKY_TEST_QUEUE"]],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert call.returncode == 0, call.stderr


def read_signals(env: dict, *, with_time: bool = False) -> list[dict]:
    """The signals the live processes sent; ``with_time`` keeps when (``logged_at``, wall clock)."""
    import json

    path = Path(env["CHUNKY_TEST_SIGNAL_LOG"])
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for line in lines if not with_time else []:
        line.pop("logged_at", None)
    return lines


def completed_signals(env: dict, upload_id: str) -> list[dict]:
    """The ``upload_completed`` signals the live processes sent for ``upload_id``."""
    return [
        s
        for s in read_signals(env)
        if s["signal"] == "upload_completed" and s.get("upload_id") == upload_id
    ]


def wait_for(predicate, timeout: float = 30, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
