"""``python -m bench.capacity``: from a target to numbers of web workers, Redis shards and Celery workers.

    python -m bench.capacity --concurrent-uploads 10000 --ingress-gbit 10 --chunk-size 8M

Calibrated on what this repository measured (``python -m bench scaling`` and
``python -m bench.rediscost`` write the two JSON files it reads); every assumption is printed
with the answer. The model, per second at the target:

- chunk requests = ingress / chunk size; completions = ingress / mean file size;
- web CPU = chunks x (fixed CPU per request + CPU per byte x chunk size), the two terms
  separated by the small-chunk (64 KiB, bench.rediscost) and the 4 MiB-chunk (bench scaling)
  measurements; one gunicorn gevent process per core (a process uses one core at most), and
  enough processes that none holds more than ``--connections-per-process`` uploads;
- Redis CPU = chunks x Redis CPU per chunk + completions x the same per round trip x the
  completion's round trips; one primary executes commands on one core, so shards = that CPU /
  the utilisation a shard may run at (the keys of one upload share a hash tag, so uploads spread
  over the shards of a cluster evenly);
- Celery workers = completions x the seconds one completion occupies a worker (1-worker batch
  of bench scaling: queue and broker round trips included), plus re-reading the file when the
  stored bytes are verified, over the utilisation;
- the volume: ingress bytes written and one fdatasync per chunk (``CHUNKY_REDIS_FSYNC``),
  plus the file read again when the stored bytes are verified.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SIZE_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = text[-1] if text and text[-1] in SIZE_SUFFIXES else ""
    number = float(text[: len(text) - len(unit)])
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive size")
    return int(number * SIZE_SUFFIXES[unit])


@dataclass(frozen=True)
class Calibration:
    """Per-unit costs, measured on the bench host (see where() for the sources)."""

    request_cpu_s: float  # web CPU per chunk request that does not grow with its size
    byte_cpu_s: float  # web CPU per byte of a chunk (md5, write, fdatasync's system time)
    nginx_byte_cpu_s: float  # nginx CPU per byte proxied
    redis_cpu_s_per_chunk: float  # Redis CPU per later chunk (2 round trips)
    chunk_round_trips: int
    completion_round_trips: int
    first_chunk_round_trips: int
    completion_worker_s: float  # Celery worker time per completion, queue overhead included
    md5_bytes_per_s: float  # one core; for re-reading a file when stored bytes are verified
    source: str = ""

    @classmethod
    def load(cls, scaling: Path, cost: Path) -> Calibration:
        s = json.loads(scaling.read_text())
        c = json.loads(cost.read_text())
        web1 = s["summary"]["web"][0]
        chunk = s["sizes"]["chunk"]
        request = c["web_cpu_ms_per_small_chunk"] / 1000  # a 64 KiB chunk, in-process
        big = web1["web_cpu_ms_per_chunk"] / 1000
        per_byte = max(0.0, (big - request) / chunk)
        celery1 = s["summary"]["celery"][0]
        return cls(
            request_cpu_s=request,
            byte_cpu_s=per_byte,
            nginx_byte_cpu_s=web1["nginx_cpu_ms_per_chunk"] / 1000 / chunk,
            redis_cpu_s_per_chunk=c["redis_cpu_us_per_chunk"] / 1e6,
            chunk_round_trips=c["summary"]["per_chunk_round_trips"],
            completion_round_trips=c["summary"]["completion_round_trips"],
            first_chunk_round_trips=c["summary"]["first_chunk_round_trips"],
            completion_worker_s=celery1["batch_s"] / s["sizes"]["batch"],
            md5_bytes_per_s=c["md5_mb_s"] * 1e6,
            source=f"{scaling.name} ({s['host']['cpu']}, {s['host']['cores']} cores) + {cost.name}",
        )


@dataclass(frozen=True)
class Target:
    concurrent_uploads: int
    ingress_bytes_per_s: float
    chunk_size: int
    file_size: int
    utilisation: float = 0.6  # of each core / Redis shard / worker: headroom for bursts
    connections_per_process: int = 4000  # gunicorn's worker_connections (deploy/gunicorn.conf.py)
    verify_stored_bytes: bool = False


@dataclass(frozen=True)
class Plan:
    chunks_per_s: float
    completions_per_s: float
    web_cores: float
    web_processes: int
    nginx_cores: float
    redis_cpu: float  # cores of Redis command execution
    redis_round_trips_per_s: float
    redis_shards: int
    celery_workers: int
    volume_write_bytes_per_s: float
    volume_read_bytes_per_s: float
    fsyncs_per_s: float
    per_upload_bytes_per_s: float


def plan(t: Target, k: Calibration) -> Plan:
    chunks = t.ingress_bytes_per_s / t.chunk_size
    completions = t.ingress_bytes_per_s / t.file_size
    # a new upload's first chunk costs more round trips than a later one; a file of one chunk is all first
    first = min(completions, chunks)
    later = chunks - first
    web_cpu = chunks * (k.request_cpu_s + k.byte_cpu_s * t.chunk_size)
    web_cores = web_cpu / t.utilisation
    processes = max(
        math.ceil(web_cores), math.ceil(t.concurrent_uploads / t.connections_per_process), 1
    )
    per_trip = k.redis_cpu_s_per_chunk / k.chunk_round_trips
    trips = (
        later * k.chunk_round_trips
        + first * k.first_chunk_round_trips
        + completions * k.completion_round_trips
    )
    redis_cpu = trips * per_trip
    verify = t.file_size / k.md5_bytes_per_s if t.verify_stored_bytes else 0.0
    workers = completions * (k.completion_worker_s + verify) / t.utilisation
    return Plan(
        chunks_per_s=chunks,
        completions_per_s=completions,
        web_cores=web_cores,
        web_processes=processes,
        nginx_cores=t.ingress_bytes_per_s * k.nginx_byte_cpu_s / t.utilisation,
        redis_cpu=redis_cpu,
        redis_round_trips_per_s=trips,
        redis_shards=max(1, math.ceil(redis_cpu / t.utilisation)),
        celery_workers=max(1, math.ceil(workers)),
        volume_write_bytes_per_s=t.ingress_bytes_per_s,
        volume_read_bytes_per_s=t.ingress_bytes_per_s if t.verify_stored_bytes else 0.0,
        fsyncs_per_s=chunks,
        per_upload_bytes_per_s=t.ingress_bytes_per_s / t.concurrent_uploads,
    )


def shard_chunks_per_s(t: Target, k: Calibration) -> float:
    """Later-chunk requests one Redis primary takes at the target utilisation (its ceiling)."""
    return t.utilisation / k.redis_cpu_s_per_chunk


def render(t: Target, k: Calibration, p: Plan) -> str:
    mb = 1e6
    lines = [
        f"target: {t.concurrent_uploads:,} concurrent uploads, {t.ingress_bytes_per_s * 8 / 1e9:g} Gbit/s in, "
        f"{t.chunk_size / (1 << 20):g} MiB chunks, files of {t.file_size / (1 << 20):g} MiB on average",
        f"  -> {p.chunks_per_s:,.0f} chunk requests/s, {p.completions_per_s:,.1f} completions/s, "
        f"{p.per_upload_bytes_per_s / mb:.2f} MB/s per upload",
        "",
        f"web (gunicorn gevent, 1 process per core): {p.web_processes} processes "
        f"({p.web_cores:.1f} cores of CPU at {t.utilisation:.0%}; <= {t.connections_per_process} uploads each)",
        f"nginx: {p.nginx_cores:.1f} cores",
        f"Redis: {p.redis_round_trips_per_s:,.0f} round trips/s, {p.redis_cpu:.2f} cores of command "
        f"execution -> {p.redis_shards} primary/shard(s) (+ a replica each for failover)",
        f"  (one shard at {t.utilisation:.0%} takes {shard_chunks_per_s(t, k):,.0f} chunk requests/s: "
        f"{shard_chunks_per_s(t, k) * t.chunk_size * 8 / 1e9:,.1f} Gbit/s at this chunk size)",
        f"Celery workers (prefork, concurrency 1): {p.celery_workers}",
        f"chunk volume: {p.volume_write_bytes_per_s / mb:,.0f} MB/s written, {p.fsyncs_per_s:,.0f} fdatasync/s"
        + (
            f", {p.volume_read_bytes_per_s / mb:,.0f} MB/s read back"
            if p.volume_read_bytes_per_s
            else ""
        ),
        "",
        f"assumptions (calibrated on {k.source}):",
        f"  web CPU per chunk = {k.request_cpu_s * 1000:.2f} ms + {k.byte_cpu_s * (1 << 20) * 1000:.2f} ms per MiB",
        f"  nginx CPU = {k.nginx_byte_cpu_s * (1 << 20) * 1000:.2f} ms per MiB proxied",
        f"  Redis: {k.chunk_round_trips} round trips per chunk, {k.first_chunk_round_trips} for a first chunk, "
        f"{k.completion_round_trips} per completion (finalization included); "
        f"{k.redis_cpu_s_per_chunk * 1e6:.0f} us of Redis CPU per chunk",
        f"  a completion occupies a Celery worker {k.completion_worker_s * 1000:.0f} ms"
        + (
            f" + re-reading the file at {k.md5_bytes_per_s / mb:.0f} MB/s"
            if t.verify_stored_bytes
            else " (hand-off by rename on the same volume; no re-read)"
        ),
        f"  every core, shard and worker at most {t.utilisation:.0%} busy; cores as fast as the bench host's;",
        "  the Celery broker, status polls and the sweeper are not counted (a Redis broker belongs on "
        "its own instance)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.capacity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--concurrent-uploads", type=int, default=10_000)
    parser.add_argument(
        "--ingress-gbit", type=float, default=10.0, help="Gbit/s of upload bytes in"
    )
    parser.add_argument("--chunk-size", type=parse_size, default=parse_size("8M"))
    parser.add_argument(
        "--file-size", type=parse_size, default=parse_size("1G"), help="mean file size"
    )
    parser.add_argument("--utilisation", type=float, default=0.6)
    parser.add_argument("--connections-per-process", type=int, default=4000)
    parser.add_argument("--verify-stored-bytes", action="store_true")
    parser.add_argument("--scaling", type=Path, default=RESULTS / "scaling" / "scaling.json")
    parser.add_argument("--redis-cost", type=Path, default=RESULTS / "redis_cost.json")
    parser.add_argument("--json", action="store_true", help="the plan as JSON")
    args = parser.parse_args(argv)
    if not 0 < args.utilisation <= 1:
        parser.error("--utilisation must be in (0, 1]")
    if args.concurrent_uploads < 1 or args.ingress_gbit <= 0:
        parser.error("--concurrent-uploads and --ingress-gbit must be positive")
    target = Target(
        concurrent_uploads=args.concurrent_uploads,
        ingress_bytes_per_s=args.ingress_gbit * 1e9 / 8,
        chunk_size=args.chunk_size,
        file_size=args.file_size,
        utilisation=args.utilisation,
        connections_per_process=args.connections_per_process,
        verify_stored_bytes=args.verify_stored_bytes,
    )
    calibration = Calibration.load(args.scaling, args.redis_cost)
    result = plan(target, calibration)
    if args.json:
        print(json.dumps({"target": asdict(target), "plan": asdict(result)}, indent=1))
    else:
        print(render(target, calibration, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
