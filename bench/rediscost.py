"""What one chunk and one completion cost Redis: round trips, commands and Redis CPU time.

``python -m bench.rediscost`` starts a private redis-server on a free port (never the shared one:
its INFO counters would mix in everyone's traffic), drives the bundled views in-process through
Django's test client (tests/settings.py: eager Celery, so a completion's request includes its
finalization, as the two together are what one upload costs), and writes
``bench/results/redis_cost.json``, which the capacity calculator (``bench/capacity.py``) reads.

- round trips and the commands the application sends: counted on the client side by wrapping
  redis-py's ``Redis.execute_command`` (one round trip each) and ``Pipeline.execute`` (one round
  trip for the whole pipeline);
- the commands Redis ran, scripts' inner calls included: ``INFO commandstats`` deltas;
- Redis CPU per chunk: ``INFO cpu`` (used_cpu_user + used_cpu_sys, the server's getrusage) over
  many chunks. Redis executes commands on one thread, so 1 s of that CPU per second is the
  ceiling of one primary (or one cluster shard).

tests/test_redis_cost.py uses the same counters and fails when the count per chunk changes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.client import Pipeline
from redis.cluster import ClusterPipeline, RedisCluster

from chunky_redis.core.direct_scripts import DirectScript

# what the application sends (the rest of commandstats are scripts' inner calls)
TOP_LEVEL = {"evalsha", "eval", "set", "zadd", "zrem", "hgetall", "get", "del", "exists", "pttl"}
RESULTS = Path(__file__).resolve().parent / "results" / "redis_cost.json"


@dataclass
class Calls:
    """Round trips and command names the application sent, as redis-py saw them."""

    round_trips: int = 0
    commands: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "round_trips": self.round_trips,
            "commands": sum(self.commands.values()),
            "by_name": dict(sorted(self.commands.items())),
        }


@contextmanager
def counting() -> Iterator[Calls]:
    """Count every round trip any redis-py client in this process makes until the block ends.

    Redis Cluster clients too (``RedisCluster`` is not a ``Redis``): a pipeline counts as one
    round trip there as well, though it takes one per node its keys live on."""
    calls = Calls()

    def count(names: list) -> None:
        calls.round_trips += 1
        for name in names:
            calls.commands[str(name).upper()] += 1

    def wrap_single(cls: type, pipeline_cls: type):
        original = cls.execute_command

        def execute_command(self, *args, **options):
            # a pipeline only queues here (outside of immediate WATCH mode): counted when it runs
            if not isinstance(self, pipeline_cls) or getattr(self, "watching", False):
                count([args[0]])
            return original(self, *args, **options)

        return original, execute_command

    def plain_pipeline(original):
        def execute(self, raise_on_error: bool = True):
            if self.command_stack:
                count([args[0] for args, _ in self.command_stack])
            return original(self, raise_on_error)

        return execute

    def cluster_pipeline(original):
        def execute(self, raise_on_error: bool = True):
            queue = getattr(self._execution_strategy, "_command_queue", [])
            if queue:
                count([command.args[0] for command in queue])
            return original(self, raise_on_error)

        return execute

    def direct_script(original):
        def direct(self, keys, args):
            count(["EVALSHA"])  # the direct attempt; a fallback through Script counts its own
            return original(self, keys, args)

        return direct

    saved = [
        (DirectScript, "direct", DirectScript.direct, direct_script(DirectScript.direct)),
        (redis.Redis, "execute_command", *wrap_single(redis.Redis, Pipeline)),
        (RedisCluster, "execute_command", *wrap_single(RedisCluster, ClusterPipeline)),
        (Pipeline, "execute", Pipeline.execute, plain_pipeline(Pipeline.execute)),
        (
            ClusterPipeline,
            "execute",
            ClusterPipeline.execute,
            cluster_pipeline(ClusterPipeline.execute),
        ),
    ]
    for cls, name, _, wrapper in saved:
        setattr(cls, name, wrapper)
    try:
        yield calls
    finally:
        for cls, name, original, _ in saved:
            setattr(cls, name, original)


def server_counters(client: redis.Redis) -> dict:
    """The private server's command counts (scripts' inner calls included) and CPU seconds."""
    stats = client.info("commandstats")
    cpu = client.info("cpu")
    return {
        "calls": {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()},
        "usec": {k.removeprefix("cmdstat_"): v["usec"] for k, v in stats.items()},
        "cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
    }


def server_delta(before: dict, after: dict) -> dict:
    calls = {
        name: n - before["calls"].get(name, 0)
        for name, n in after["calls"].items()
        if n - before["calls"].get(name, 0)
    }
    calls.pop("info", None)  # our own reads of the counters
    return {"commands": sum(calls.values()), "by_name": dict(sorted(calls.items()))}


# -- one upload through the views -----------------------------------------------------------------


def put_chunk(client, upload_id: str | None, data: bytes, start: int, total: int) -> str:
    path = f"/upload/{upload_id}/" if upload_id else "/upload/"
    headers = {
        "Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}",
        "Content-Disposition": 'attachment; filename="cost.bin"',
    }
    reply = client.put(path, data, content_type="application/octet-stream", headers=headers)
    if reply.status_code != 200:
        raise RuntimeError(f"chunk refused: HTTP {reply.status_code} {reply.content[:300]!r}")
    return reply.json()["upload_id"]


def complete(client, upload_id: str, md5: str) -> None:
    reply = client.post(f"/upload/{upload_id}/", {"md5": md5}, content_type="application/json")
    if reply.status_code not in (200, 202):
        raise RuntimeError(f"completion refused: HTTP {reply.status_code} {reply.content[:300]!r}")
    status = client.get(f"/upload/{upload_id}/").json()["status"]
    if status != "complete":
        raise RuntimeError(f"the upload ended as {status}")


def phases(
    client, server: redis.Redis | None, chunks: int, chunk_size: int, *, server_stats: bool = True
) -> dict:
    """Counts for each step of one upload of ``chunks`` chunks: first chunk, each later chunk
    (per chunk, so a step that varies shows up), a status read and the completion. Without
    ``server_stats`` (fakeredis, or the shared Redis) only the client-side counts."""
    import hashlib

    data = os.urandom(chunk_size)
    total = chunks * chunk_size
    md5 = hashlib.md5(data * chunks).hexdigest()
    out: dict = {"chunk": [], "md5": md5}

    def step(fn):
        before = server_counters(server) if server_stats and server else None
        with counting() as calls:
            value = fn()
        counts = calls.as_dict()
        if before is not None:
            counts["server"] = server_delta(before, server_counters(server))
        return value, counts

    upload_id, out["first_chunk"] = step(lambda: put_chunk(client, None, data, 0, total))
    for i in range(1, chunks):
        _, counts = step(lambda i=i: put_chunk(client, upload_id, data, i * chunk_size, total))
        out["chunk"].append(counts)
    _, out["status"] = step(lambda: client.get(f"/upload/{upload_id}/"))
    _, out["completion"] = step(lambda: complete(client, upload_id, md5))
    out["upload_id"] = upload_id
    return out


def redis_cpu_per_chunk(client, server: redis.Redis, uploads: int, chunks: int, size: int) -> dict:
    """Redis CPU time per chunk over many chunks (getrusage is coarse for one request).

    Two figures: the process's CPU (networking and parsing included) minus what it burns idle
    (serverCron, measured first), and the execution time INFO commandstats gives the commands
    the application sent (EVALSHA's includes the script's inner calls)."""
    data = os.urandom(size)
    total = chunks * size
    idle0, t_idle = server_counters(server), time.perf_counter()
    time.sleep(3)
    idle_cpu_per_s = (server_counters(server)["cpu_s"] - idle0["cpu_s"]) / (
        time.perf_counter() - t_idle
    )
    before = server_counters(server)
    t0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(uploads):
        upload_id = put_chunk(client, None, data, 0, total)
        for i in range(1, chunks):
            put_chunk(client, upload_id, data, i * size, total)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    after = server_counters(server)
    n = uploads * chunks
    busy = after["cpu_s"] - before["cpu_s"] - idle_cpu_per_s * seconds
    executed = sum(
        after["usec"][name] - before["usec"].get(name, 0)
        for name in after["usec"]
        if name in TOP_LEVEL
    )
    return {
        "chunks": n,
        "redis_cpu_us_per_chunk": busy * 1e6 / n,
        "redis_exec_us_per_chunk": executed / n,
        "redis_idle_cpu_ms_per_s": idle_cpu_per_s * 1000,
        "django_test_client_chunks_per_s": n / seconds,
        # this process's CPU (views, redis-py, md5, write; the test client's own share is small):
        # the fixed part of a chunk request's web CPU, as a 64 KiB chunk's bytes cost little
        "web_cpu_ms_per_small_chunk": cpu * 1000 / n,
    }


def md5_rate(size: int = 64 << 20) -> float:
    """MB/s of md5 on one core: what re-reading a file for verification costs at best."""
    import hashlib

    data = os.urandom(size)
    t0 = time.perf_counter()
    hashlib.md5(data).hexdigest()
    return size / (time.perf_counter() - t0) / 1e6


# -- a private redis-server --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of our own (no persistence: the CPU measured is the commands')."""
    directory = Path(tempfile.mkdtemp(prefix="chunky-rediscost-"))
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
        + ["--save", "", "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def summary(steps: dict) -> dict:
    later = steps["chunk"]
    rounds = sorted({c["round_trips"] for c in later})
    return {
        "per_chunk_round_trips": rounds[0] if len(rounds) == 1 else rounds,
        "per_chunk_commands_sent": later[0]["commands"],
        "per_chunk_commands_run": later[0]["server"]["commands"],
        "first_chunk_round_trips": steps["first_chunk"]["round_trips"],
        "completion_round_trips": steps["completion"]["round_trips"],
        "status_round_trips": steps["status"]["round_trips"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rediscost", description=__doc__)
    parser.add_argument("--chunks", type=int, default=8, help="chunks of the counted upload")
    parser.add_argument("--uploads", type=int, default=100, help="uploads for the CPU figure")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    import tasks  # noqa: F401  (the bundled Celery app, configured from tests.settings: eager)

    django.setup()
    from django.conf import settings
    from django.test import Client

    work = Path(tempfile.mkdtemp(prefix="chunky-rediscost-files-"))
    try:
        with private_redis() as url:
            settings.CHUNKY_REDIS_REDIS_URL = url
            settings.CHUNKY_REDIS_KEY_PREFIX = f"cost-{uuid.uuid4().hex[:8]}"
            settings.CHUNKY_REDIS_UPLOAD_DIR = str(work / "chunks")
            settings.MEDIA_ROOT = str(work / "media")
            settings.CHUNKY_REDIS_ALLOW_ANONYMOUS = True
            server = redis.Redis.from_url(url)
            client = Client()
            phases(client, server, 2, 65536)  # warm-up: loads the scripts (NOSCRIPT + LOAD once)
            steps = phases(client, server, args.chunks, 65536)
            # three samples, the median of each figure: the host is shared and noisy
            samples = [
                redis_cpu_per_chunk(client, server, args.uploads, 10, 65536) for _ in range(3)
            ]
            cpu = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
            info = server.info("server")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    data = {
        "redis_version": info["redis_version"],
        "md5_mb_s": md5_rate(),
        "summary": summary(steps),
        **cpu,
        "steps": steps,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps({**data["summary"], **cpu}, indent=1))
    for name in ("first_chunk", "status", "completion"):
        print(f"{name}: {steps[name]['by_name']}  (Redis ran {steps[name]['server']['by_name']})")
    print(
        f"later chunk: {steps['chunk'][0]['by_name']}  (Redis ran {steps['chunk'][0]['server']['by_name']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
