"""Starting, measuring and stopping every server of a run; installing the anchors when missing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .client import ChunkedUpload, Chunky, Connection, Protocol, Tus

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
DCU_VENV = BENCH / "venvs" / "dcu"
TUS_DIR = BENCH / "anchors" / "tus"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A free port; from CHUNKY_TEST_PORTS ("7600-7699") when set, as the tests do."""
    first, _, last = os.environ.get("CHUNKY_TEST_PORTS", "").partition("-")
    for port in range(int(first), int(last) + 1) if first and last else [0]:
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            if port:  # 0 asks the kernel for a new one each time: nothing to remember
                _HANDED_OUT.add(port)
            return s.getsockname()[1]
    raise RuntimeError("no free port in CHUNKY_TEST_PORTS")


# -- installing the anchors ---------------------------------------------------------------------


def ensure_dcu() -> Path:
    python = DCU_VENV / "bin" / "python"
    stamp = DCU_VENV / ".installed"
    requirements = BENCH / "anchors" / "dcu" / "requirements.txt"
    if not stamp.exists() or stamp.read_text() != requirements.read_text():
        print(
            "bench: creating the django-chunked-upload venv (Django 3.2) in bench/venvs/dcu",
            flush=True,
        )
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(DCU_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True
        )
        stamp.write_text(requirements.read_text())
    return python


def ensure_tus() -> None:
    stamp = TUS_DIR / "node_modules" / ".installed"
    if not stamp.exists():
        print(
            "bench: installing @tus/server and @tus/file-store (npm ci) in bench/anchors/tus",
            flush=True,
        )
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=TUS_DIR, check=True
        )
        stamp.touch()


# -- process trees and their memory -----------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemoryWatch:
    """Peak RSS of each process of a server tree over a stretch of time (VmHWM, reset at the start)."""

    def __init__(self, root_pid: int):
        self.pids = tree(root_pid)
        self.baseline = {p: _status_kib(p, "VmRSS") for p in self.pids}
        for p in self.pids:
            try:
                with open(f"/proc/{p}/clear_refs", "w") as f:
                    f.write("5")  # resets VmHWM to the current RSS
            except OSError:
                pass

    def stop(self) -> dict:
        peak = {p: _status_kib(p, "VmHWM") for p in self.pids}
        increase = max((peak[p] - self.baseline[p] for p in self.pids), default=0)
        return {
            "peak_rss_mib": max(peak.values(), default=0) / 1024,
            "rss_increase_mib": increase / 1024,
        }


# -- servers --------------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    label: str
    kind: str  # "null", "chunky", "anchor"
    args: list[str]
    env: dict[str, str]
    protocol_factory: object
    data_dirs: list[Path] = field(default_factory=list)
    cwd: Path = REPO
    port: int = 0
    proc: subprocess.Popen | None = None
    multipart: bool = False  # whether workload 1 also runs as multipart on it
    raw: bool = True  # whether it takes raw bodies at all

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def protocol(self, *, as_multipart: bool = False) -> Protocol:
        return self.protocol_factory(self.url, as_multipart)  # type: ignore[operator]

    def start(self, logs: Path) -> None:
        for d in self.data_dirs:
            d.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{self.name}.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        conn = Connection(self.url)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited:\n{self.log_path.read_text(errors='replace')[-3000:]}"
                )
            try:
                if conn.request("GET", "/healthz").status == 200:
                    conn.close()
                    return
            except OSError:
                conn.close()
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} did not become healthy:\n{self.log_path.read_text(errors='replace')[-3000:]}"
        )

    def wipe(self) -> None:
        """Drop the bytes earlier measurements left (files only: records and databases stay)."""
        for d in self.data_dirs:
            for entry in d.iterdir() if d.exists() else ():
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                elif entry.suffix not in (".sqlite3",):
                    entry.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        if getattr(self, "_log", None):
            self._log.close()


def chunky_protocol(url: str, as_multipart: bool) -> Protocol:
    return Chunky(url, as_multipart=as_multipart)


def dcu_protocol(url: str, as_multipart: bool) -> Protocol:
    return ChunkedUpload(url)


def tus_protocol(url: str, as_multipart: bool) -> Protocol:
    return Tus(url)


@dataclass
class Setup:
    work: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def key_prefix(self) -> str:
        return f"chunky-bench-{self.tag}"

    def chunky_env(self, **extra: str) -> dict[str, str]:
        root = self.work / "chunky"
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="bench.site_settings",
            PYTHONPATH=os.pathsep.join([str(REPO / "deploy"), str(REPO)]),
            REDIS_URL=REDIS_URL,
            CELERY_BROKER_URL=REDIS_URL,
            CHUNKY_VAR_DIR=str(root / "var"),
            CHUNKY_UPLOAD_DIR=str(root / "chunks"),
            MEDIA_ROOT=str(root / "media"),
            SQLITE_PATH=str(root / "db.sqlite3"),
            SECRET_KEY="benchmark-only",
            DEBUG="0",
            CHUNKY_FSYNC="1",
            CHUNKY_LOG_LEVEL="WARNING",
            CHUNKY_BENCH_KEY_PREFIX=self.key_prefix,
            CHUNKY_BENCH_QUEUE=self.key_prefix,
        )
        env.update(extra)
        return env

    def chunky_dirs(self) -> list[Path]:
        return [self.work / "chunky" / "chunks", self.work / "chunky" / "media"]

    def null(self, mode: str) -> Server:
        d = self.work / f"null-{mode}"
        port = free_port()
        label = {"discard": "null: discard", "work": "null: md5 + pwrite (work limit)"}[mode]
        return Server(
            f"null-{mode}",
            label,
            "null",
            [sys.executable, "-m", "bench.nullserver", mode, str(port), str(d)],
            dict(os.environ, PYTHONPATH=str(REPO)),
            chunky_protocol,
            [d],
            port=port,
        )

    def chunky(
        self,
        variant: str,
        *,
        workers: int = 2,
        threads: int = 4,
        fsync: bool = True,
        sync_every: int | None = None,
    ) -> Server:
        port = free_port()
        env = self.chunky_env(
            PORT=str(port),
            HOST="127.0.0.1",
            WEB_CONCURRENCY=str(workers),
            GUNICORN_THREADS=str(threads),
            CHUNKY_FSYNC="1" if fsync else "0",
        )
        if sync_every is not None:  # else as inherited (CHUNKY_SYNC_EVERY=N python -m bench
            env["CHUNKY_SYNC_EVERY"] = str(sync_every)  # breakdown), or the site's default
        wsgi = "chunky_site.wsgi:application"
        if variant in ("gthread", "sync", "gevent", "asgi"):
            app = "bench.asgi_app" if variant == "asgi" else "chunky_site.wsgi"
            args = [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", app]
            env["GUNICORN_WORKER_CLASS"] = variant
            if variant == "sync":
                env["GUNICORN_THREADS"] = "1"  # gunicorn turns sync into gthread when threads > 1
            label = f"chunky_redis, gunicorn {variant}" + (
                " (Django ASGIHandler)" if variant == "asgi" else ""
            )
            if variant == "gthread":
                label += f" {workers}x{threads}"
        elif variant == "pyuwsgi":
            args = [
                str(BIN / "uwsgi"),
                "--http-socket",
                f"127.0.0.1:{port}",
                "--module",
                wsgi,
                "--master",
                "--processes",
                str(workers),
                "--threads",
                str(threads),
                "--need-app",
                "--disable-logging",
                "--die-on-term",
                "--lazy-apps",
                "--buffer-size",
                "32768",
                "--listen",  # gunicorn's default backlog: its default of 100 dropped the slow crowd
                "2048",
            ]
            label = "chunky_redis, pyuwsgi"
        elif variant == "granian":
            args = [
                str(BIN / "granian"),
                "--interface",
                "wsgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--blocking-threads",
                str(threads),
                "--no-ws",
                wsgi,
            ]
            label = "chunky_redis, granian"
        else:
            raise ValueError(variant)
        name = f"chunky-{variant}" + ("" if fsync else "-nofsync")
        if not fsync:
            label += ", CHUNKY_FSYNC=0"
        if sync_every == 0:
            name += "-eachchunk"
            label += ", CHUNKY_SYNC_EVERY=0"
        elif sync_every:
            name += "-deferred"
            label += f", CHUNKY_SYNC_EVERY={sync_every >> 20}M"
        return Server(
            name,
            label,
            "chunky",
            args,
            env,
            chunky_protocol,
            self.chunky_dirs(),
            port=port,
            multipart=True,
        )

    def worker(self) -> Server:
        env = self.chunky_env()
        args = [
            str(BIN / "celery"),
            "-A",
            "tasks",
            "worker",
            "--loglevel=INFO",
            "--pool=prefork",
            "--concurrency=1",
            "-Q",
            self.key_prefix,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{self.key_prefix}@%h",
        ]
        return Server("celery-worker", "celery worker", "worker", args, env, None, [])

    def dcu(self) -> Server:
        python = ensure_dcu()
        d = self.work / "dcu"
        d.mkdir(parents=True, exist_ok=True)
        port = free_port()
        env = dict(os.environ)
        for key in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV"):
            env.pop(key, None)
        env.update(
            DJANGO_SETTINGS_MODULE="dcu_site.settings",
            DCU_DB=str(d / "db.sqlite3"),
            DCU_MEDIA_ROOT=str(d / "media"),
            PYTHONPATH=str(BENCH / "anchors" / "dcu"),
        )
        subprocess.run([str(python), "-m", "django", "migrate", "-v", "0"], env=env, check=True)
        args = [
            str(python),
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--timeout",
            "300",
            "--keep-alive",
            "75",
            "dcu_site.wsgi",
        ]
        return Server(
            "django-chunked-upload",
            "django-chunked-upload 2.0.0 (gunicorn sync)",
            "anchor",
            args,
            env,
            dcu_protocol,
            [d / "media"],
            port=port,
            raw=False,
        )

    def tus(self) -> Server:
        ensure_tus()
        d = self.work / "tus"
        port = free_port()
        return Server(
            "tus",
            "@tus/server 2.4.5 + file-store",
            "anchor",
            ["node", "server.js", str(port), str(d)],
            dict(os.environ),
            tus_protocol,
            [d],
            cwd=TUS_DIR,
            port=port,
        )


def clean_redis(prefix: str) -> int:
    """Delete the run's keys (by prefix, never the whole database)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    # records, the Celery queue and kombu's bindings (_kombu.binding.*, _kombu.binding_permanent.*)
    keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])
    client.delete(prefix)  # the Celery queue's list
    client.close()
    return len(keys)
