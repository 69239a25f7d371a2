"""The service under fault: a private Redis, optional fault proxies, gunicorn and a Celery worker.

Every process is started here and killed by its own pid when the test ends;
nothing touches the shared Redis at 6379.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from tests.support.faultclient import COMPLETE, STUCK, Outcome, RetryingClient
from tests.support.faultredis import RedisServer
from tests.support.processes import (
    BeatProcess,
    SiteProcess,
    WorkerProcess,
    live_env,
    read_signals,
)
from tests.support.proxy import FaultProxy


class Service:
    """``client_proxy``/``redis_proxy``: route clients to gunicorn, and gunicorn and the
    worker to Redis, through a FaultProxy each. ``lock_timeout``: the upload lock's
    lifetime (short, so a killed request's lock lapses quickly; None for the default)."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        persistent_redis: bool = False,
        client_proxy: bool = False,
        redis_proxy: bool = False,
        workers: int = 2,
        threads: int = 4,
        lock_timeout: float | None = 2.0,
        upload_dir: Path | None = None,
        media_root: Path | None = None,
        **env: str,
    ):
        self.tmp = tmp_path
        self.redis = RedisServer(tmp_path / "redis-data", persistent=persistent_redis)
        self.want_client_proxy, self.want_redis_proxy = client_proxy, redis_proxy
        self.client_proxy: FaultProxy | None = None
        self.redis_proxy: FaultProxy | None = None
        self.workers, self.threads = workers, threads
        self.lock_timeout = lock_timeout
        self.upload_dir, self.media_root = upload_dir, media_root
        self.extra_env = env
        self.worker_restarts = 0
        self.site: SiteProcess | None = None
        self.worker: WorkerProcess | None = None
        self.beat: BeatProcess | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> Service:
        self.redis.start()
        redis_port = self.redis.port
        if self.want_redis_proxy:
            self.redis_proxy = FaultProxy(("127.0.0.1", self.redis.port)).start()
            redis_port = self.redis_proxy.port
        url = f"redis://127.0.0.1:{redis_port}/0"
        # As deployed (deploy/run.sh: gunicorn, a worker and beat), with the sweeper's recovery of
        # lost hand-offs sped up from minutes to seconds.
        extra = {"CHUNKY_SWEEP_INTERVAL_SECONDS": "2", "CHUNKY_REQUEUE_AFTER_SECONDS": "5"}
        extra.update(self.extra_env)
        if self.lock_timeout is not None:
            extra["CHUNKY_LOCK_TIMEOUT_SECONDS"] = str(self.lock_timeout)
        if self.upload_dir is not None:
            extra["CHUNKY_UPLOAD_DIR"] = str(self.upload_dir)
        if self.media_root is not None:
            extra["MEDIA_ROOT"] = str(self.media_root)
        self.env = live_env(self.tmp, redis_url=url, **extra)
        self.site = SiteProcess(self.env, workers=self.workers, threads=self.threads).start()
        self.worker = WorkerProcess(self.env).start()
        self.beat = BeatProcess(self.env).start()
        self.base_url = self.site.url
        if self.want_client_proxy:
            self.client_proxy = FaultProxy(("127.0.0.1", self.site.port)).start()
            self.base_url = f"http://127.0.0.1:{self.client_proxy.port}"
        return self

    def stop(self) -> None:
        for closer in (
            self.client_proxy and self.client_proxy.stop,
            self.worker and self.worker.stop,
            self.beat and self.beat.stop,
            self.site and self.site.stop,
            self.redis_proxy and self.redis_proxy.stop,
            self.redis.stop,
        ):
            if closer:
                try:
                    closer()
                except Exception:  # stop everything even if one part is already gone
                    pass

    def __enter__(self) -> Service:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- processes ---------------------------------------------------------------
    def supervise_worker(self) -> bool:
        """Start a new worker or beat if one exited, as a process supervisor would.

        Returns True when it had to (the caller notes it: a worker should not exit).
        """
        assert self.worker is not None and self.beat is not None
        restarted = False
        if self.beat.proc is not None and self.beat.proc.poll() is not None:
            self.beat.stop()
            self.beat = BeatProcess(self.env).start()
            restarted = True
        if self.worker.proc is None or self.worker.proc.poll() is not None:
            self.worker.stop()
            self.worker = WorkerProcess(self.env, name="worker-restarted").start()
            restarted = True
        self.worker_restarts += restarted
        return restarted

    def restart_worker(self, **env: str) -> None:
        assert self.worker is not None
        self.worker.stop()
        self.worker = WorkerProcess(dict(self.env, **env)).start()

    def web_workers(self) -> list[psutil.Process]:
        assert self.site is not None and self.site.proc is not None
        try:
            return psutil.Process(self.site.proc.pid).children()
        except psutil.NoSuchProcess:
            return []

    def web_worker_serving(self) -> psutil.Process | None:
        """A gunicorn worker with an open client connection on the site's port."""
        assert self.site is not None
        for worker in self.web_workers():
            try:
                connections = worker.net_connections(kind="tcp")
            except psutil.Error:
                continue
            for c in connections:
                if (
                    c.status == psutil.CONN_ESTABLISHED
                    and c.laddr
                    and c.laddr.port == self.site.port
                ):
                    return worker
        return None

    def healthy(self, timeout: float = 2.0) -> bool:
        try:
            return requests.get(self.base_url + "/healthz", timeout=timeout).status_code == 200
        except requests.RequestException:
            return False

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise AssertionError("the service did not become healthy again")
            time.sleep(0.2)

    def diagnose(self, upload_id: str | None) -> str:
        """What Redis holds about an upload and the task queue, for a failure message."""
        if not upload_id:
            return ""
        prefix, queue = self.env["CHUNKY_TEST_KEY_PREFIX"], self.env["CHUNKY_TEST_QUEUE"]
        try:
            r = self.redis.client()
            record = r.hmget(f"{prefix}:{{{upload_id}}}:upload", "status", "offset", "size")
            lock = r.pttl(f"{prefix}:{{{upload_id}}}:lock")
            lease = r.pttl(f"{prefix}:{{{upload_id}}}:finalize")
            queued = r.llen(f"{queue}:{queue}")
            unacked = r.zcard(f"{queue}:unacked_index")
        except Exception as e:  # Redis may be the thing that is down
            return f" [redis: {e}]"
        fields = [v.decode() if v else None for v in record]
        return (
            f" [record {fields}, lock ttl {lock} ms, lease ttl {lease} ms,"
            f" {queued} queued, {unacked} unacked]"
        )

    # -- uploads -----------------------------------------------------------------
    def client(self, **kwargs: object) -> RetryingClient:
        return RetryingClient(self.base_url, **kwargs)  # type: ignore[arg-type]

    def media(self, name: str) -> Path:
        return Path(self.env["MEDIA_ROOT"]) / name

    def chunk_dir(self) -> Path:
        return Path(self.env["CHUNKY_UPLOAD_DIR"])


class Uploaders:
    """Clients that upload fresh random payloads, one after another, until stopped."""

    def __init__(
        self,
        service: Service,
        n: int,
        *,
        size: int | Callable[[random.Random], int] = 1 << 20,
        seed: int = 0,
        **client_kwargs: object,
    ):
        self.service = service
        self.size = size
        self.outcomes: list[Outcome] = []
        self.clients = [
            service.client(seed=seed + i, **client_kwargs)  # type: ignore[arg-type]
            for i in range(n)
        ]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(c, random.Random(seed + i)), daemon=True)
            for i, c in enumerate(self.clients)
        ]

    def _run(self, client: RetryingClient, rnd: random.Random) -> None:
        while True:  # at least one upload each, even when started with once=True
            size = self.size(rnd) if callable(self.size) else self.size
            outcome = client.upload(rnd.randbytes(size))
            with self._lock:
                self.outcomes.append(outcome)
            if self._stop.is_set():
                return

    def start(self, once: bool = False) -> Uploaders:
        if once:
            self._stop.set()  # each client does exactly one upload
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 300.0) -> list[Outcome]:
        """Let each client finish the upload it is on, then return every outcome."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        return self.outcomes

    def mid_body(self, min_bytes: int = 16 * 1024) -> bool:
        return any(c.in_body.is_set() and c.body_sent >= min_bytes for c in self.clients)


@dataclass
class Tally:
    """What happened to the uploads of one fault row."""

    uploads: int = 0
    complete: int = 0
    lost: int = 0  # failed, or refused for good
    corrupted: int = 0  # complete with other bytes than the client's
    stuck: int = 0  # not finished by the deadline
    signal_errors: int = 0  # upload_completed not exactly once, or sent for an abandoned upload
    restarts: int = 0  # started over from byte 0 after a 404 (a lost record)
    completed_then_lost: int = 0  # of those: completed (signal sent) before the record was lost
    non_json: int = 0
    http_500: int = 0
    answers: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def merge(self, other: Tally) -> Tally:
        for name in ("uploads", "complete", "lost", "corrupted", "stuck", "signal_errors"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name in ("restarts", "completed_then_lost", "non_json", "http_500"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.answers.update(other.answers)
        self.problems += other.problems
        return self

    @property
    def ok(self) -> bool:
        return not (self.lost or self.corrupted or self.stuck or self.signal_errors)

    def as_row(self) -> dict[str, object]:
        return {
            "uploads": self.uploads,
            "complete": self.complete,
            "lost": self.lost,
            "corrupted": self.corrupted,
            "stuck": self.stuck,
            "signal_errors": self.signal_errors,
            "restarts": self.restarts,
            "completed_then_lost": self.completed_then_lost,
            "non_json": self.non_json,
            "http_500": self.http_500,
            "answers": {f"{s} {c}".strip(): n for (s, c), n in sorted(self.answers.items())},
            "problems": self.problems[:20],
        }


def md5_of(path: Path) -> str | None:
    digest = hashlib.md5()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def check_outcomes(service: Service, outcomes: list[Outcome], settle: float = 10.0) -> Tally:
    """Judge every upload byte for byte: the final file, the status and the signal."""
    tally = Tally(uploads=len(outcomes))
    for o in outcomes:
        tally.restarts += o.restarts
        tally.non_json += len(o.non_json)
        tally.answers.update(o.answers)
        tally.http_500 += sum(n for (s, _), n in o.answers.items() if s == 500)
        tally.problems += o.non_json[:3]
    finished = [o for o in outcomes if o.state == COMPLETE]
    # The status turns complete just before the worker sends the signal: give it a moment.
    deadline = time.monotonic() + settle
    while True:
        sent = [
            s
            for s in read_signals(service.env, with_time=True)
            if s["signal"] == "upload_completed"
        ]
        completed = Counter(s["upload_id"] for s in sent)
        if all(completed[o.upload_id] >= 1 for o in finished) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for o in outcomes:
        label = f"upload {o.upload_id or '-'} ({o.size} bytes)"
        for old, at in zip(o.abandoned, o.abandoned_at, strict=True):
            # A signal sent before the 404 is an upload that completed and then lost its
            # record (Redis restarted empty before the client saw "complete"): the client
            # starts over, but nothing resurrected it. One sent after the 404 did.
            late = [
                s["logged_at"] - at for s in sent if s["upload_id"] == old and s["logged_at"] > at
            ]
            if late:
                tally.signal_errors += 1
                tally.problems.append(
                    f"abandoned upload {old} completed {len(late)} time(s) after its 404"
                    f" (+{max(late):.2f} s)"
                )
            elif completed[old]:
                tally.completed_then_lost += 1
        if o.state == STUCK:
            tally.stuck += 1
            tally.problems.append(
                f"{label} stuck: {o.error}{service.diagnose(o.upload_id)}; last: {list(o.trace)}"
            )
            continue
        if o.state != COMPLETE:
            tally.lost += 1
            tally.problems.append(
                f"{label} {o.state}: {o.error or o.status.get('reason')}"
                + f"{service.diagnose(o.upload_id)}; last: {list(o.trace)}"
            )
            continue
        name = o.status.get("final_name", "")
        if md5_of(service.media(name)) != o.md5 or o.status.get("size") != o.size:
            tally.corrupted += 1
            tally.problems.append(f"{label} complete with other bytes than the client's")
        else:
            tally.complete += 1
        if completed[o.upload_id] != 1:
            tally.signal_errors += 1
            tally.problems.append(f"{label}: upload_completed sent {completed[o.upload_id]} times")
    return tally
