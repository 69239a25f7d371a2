"""``python -m bench.wait_cost``: what CHUNKY_REDIS_WAIT_REPLICAS=1 costs per chunk.

Starts a private Redis primary with one replica (loopback, free ports), and two copies
of the bundled site under gunicorn gthread on it, identical but for CHUNKY_WAIT_REPLICAS
(0 and 1). One client uploads to each in turn, interleaved round by round, and the
table gives medians and the ratio WAIT/no WAIT measured in the same run.

python -m bench.wait_cost            3 rounds: 64 MiB in 64 KiB chunks, 256 MiB in 8 MiB chunks
python -m bench.wait_cost --quick    1 round, 8 MiB and 64 MiB
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.processes import wait_for
from tests.support.redis_servers import RedisNode, free_ports

from .__main__ import KiB, MiB, make_source
from .client import upload
from .report import paired_rows
from .servers import BENCH, Setup

WORKLOADS = {
    "full": [("64 KiB chunks", 64 * MiB, 64 * KiB), ("8 MiB chunks", 256 * MiB, 8 * MiB)],
    "quick": [("64 KiB chunks", 8 * MiB, 64 * KiB), ("8 MiB chunks", 64 * MiB, 8 * MiB)],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wait_cost", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rounds = args.rounds or (1 if args.quick else 3)
    workloads = WORKLOADS["quick" if args.quick else "full"]
    work = BENCH / ".work"
    run_dir = work / "wait"
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    run_dir.mkdir(parents=True)
    source = make_source(work / "source-wait.bin", max(size for _, size, _ in workloads))

    redis_root = Path(tempfile.mkdtemp(prefix="chunky-bench-redis-"))
    primary_port, replica_port = free_ports(2)
    primary = RedisNode(redis_root, primary_port, [])
    replica = RedisNode(redis_root, replica_port, ["--replicaof", "127.0.0.1", str(primary_port)])
    servers = []
    try:
        primary.start()
        replica.start()
        wait_for(
            lambda: replica.client().info("replication").get("master_link_status") == "up",
            timeout=30,
            message="the replica",
        )
        url = f"redis://127.0.0.1:{primary.port}/0"
        for replicas in (0, 1):
            setup = Setup(run_dir / f"wait{replicas}")
            server = setup.chunky("gthread")
            server.name, server.label = f"wait-{replicas}", f"CHUNKY_WAIT_REPLICAS={replicas}"
            server.env.update(
                REDIS_URL=url, CELERY_BROKER_URL=url, CHUNKY_WAIT_REPLICAS=str(replicas)
            )
            servers.append(server)
        for server in servers:
            server.start(run_dir)
        for server in servers:
            server.wait_healthy()
        results: dict[str, dict[str, list]] = {}
        for round_no in range(rounds):
            for name, row in _commits(url, round_no).items():
                results.setdefault("store.commit() alone", {}).setdefault(name, []).extend(row)
            for name, size, chunk in workloads:
                for server in servers:
                    result = upload(server.protocol(), str(source), size, chunk)
                    row = results.setdefault(name, {}).setdefault(server.name, [])
                    row.append((result.mb_s, statistics.median(result.chunk_ms)))
                    server.wipe()
            print(f"wait_cost: round {round_no + 1}/{rounds} done", flush=True)
        assert replica.client().info("replication")["master_link_status"] == "up"
    finally:
        for server in servers:
            server.stop()
        replica.stop()
        primary.stop()
        subprocess.run(["rm", "-rf", str(redis_root)], check=True)

    text = table(results, rounds)
    print(text)
    out = work / "results" if args.quick else BENCH / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "wait_cost.md").write_text(text + "\n")
    (out / "wait_cost.json").write_text(json.dumps(results, indent=1))
    return 0


def _commits(url: str, round_no: int, count: int = 1000) -> dict[str, list]:
    """The Redis side alone: chunk commits per second through the store, without and with WAIT."""
    import time

    import redis

    from chunky_redis.core.store import Upload, UploadStore

    client, out = redis.Redis.from_url(url), {}
    for replicas in (0, 1):
        prefix = f"chunky-bench-wait{replicas}-{round_no}"
        store = UploadStore(client, prefix=prefix, wait_replicas=replicas)
        now = store.now()
        upload = Upload(upload_id="b" * 32, size=1 << 40, created=now, expires=now + 3_600_000)
        store.create(upload)
        started = time.perf_counter()
        for _ in range(count):
            store.acquire(upload.upload_id, "", "token")
            store.commit(
                upload,
                "token",
                new_offset=upload.offset + 1,
                hash_state=b"s" * 100,
                expires=upload.expires,
            )
            upload.offset += 1
        seconds = time.perf_counter() - started
        out[f"wait-{replicas}"] = [(count / seconds, seconds / count * 1000)]
    return out


def table(results: dict[str, dict[str, list]], rounds: int) -> str:
    lines = [
        f"WAIT 1 replica vs none (gunicorn gthread, loopback replica, median of {rounds} round(s))",
        "",
        "| workload | no WAIT | WAIT 1 | throughput ratio | median chunk latency |",
        "|---|---|---|---|---|",
    ]
    lines += paired_rows(
        results,
        "wait-0",
        "wait-1",
        lambda name: "chunks/s" if name.startswith("store.") else "MB/s",
        digits=2,
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
