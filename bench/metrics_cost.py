"""``python -m bench.metrics_cost``: what CHUNKY_REDIS_METRICS=1 costs per chunk.

Two measurements, each with metrics off and on interleaved round by round, so that the ratio
on/off comes from one run on one (noisy) machine:

- in process: the upload service alone (start_chunk, write, finish of one 64 KiB chunk on the
  Redis at BENCH_REDIS_URL, no fsync), as the views call it, metrics counted in this process's
  registry; a service with the metrics off and one with them on take chunks alternately;
- end to end: two copies of the bundled site under gunicorn gevent (2 workers), identical but for
  CHUNKY_METRICS (on: multiprocess mode, deploy/gunicorn.conf.py), each sent the same uploads by one
  client over keep-alive; median chunk latency and throughput.

python -m bench.metrics_cost            5 rounds: 2,000 in-process chunks; 32 MiB in 64 KiB chunks
                                        and 256 MiB in 8 MiB chunks end to end
python -m bench.metrics_cost --quick    2 rounds, smaller
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .__main__ import KiB, MiB, make_source
from .client import upload
from .report import paired_rows
from .servers import BENCH, REDIS_URL, Setup

WORKLOADS = {
    "full": [("64 KiB chunks", 32 * MiB, 64 * KiB), ("8 MiB chunks", 256 * MiB, 8 * MiB)],
    "quick": [("64 KiB chunks", 8 * MiB, 64 * KiB), ("8 MiB chunks", 64 * MiB, 8 * MiB)],
}


def in_process(chunks: int, work: Path) -> dict[bool, float]:
    """Microseconds per 64 KiB chunk through UploadService, metrics off and on.

    Two services, one built with the metrics off and one with them on, take the chunks of their
    own upload alternately, so that drift (the disk writing back earlier chunks, other load) falls
    on both alike."""
    from django.test import override_settings

    from chunky_redis import runtime
    from chunky_redis.core.http import ByteRange

    data = os.urandom(64 * KiB)
    total = chunks * len(data)
    base = dict(
        CHUNKY_REDIS_REDIS_URL=REDIS_URL,
        CHUNKY_REDIS_KEY_PREFIX=f"chunky-bench-metrics-{os.getpid()}",
        CHUNKY_REDIS_UPLOAD_DIR=str(work / "chunks"),
        CHUNKY_REDIS_FSYNC=False,  # the disk's noise would hide what is measured
    )
    services = {}
    for on in (False, True):
        with override_settings(**base, CHUNKY_REDIS_METRICS=on):
            services[on] = runtime.get_service()
    upload_ids: dict[bool, str | None] = {False: None, True: None}
    seconds = {False: 0.0, True: 0.0}
    with override_settings(**base):
        for n in range(chunks):
            start = n * len(data)
            for on in (False, True) if n % 2 else (True, False):
                began = time.perf_counter()
                session = services[on].start_chunk(
                    owner="",
                    upload_id=upload_ids[on],
                    byte_range=ByteRange(start, start + len(data) - 1, total),
                    length=len(data),
                    max_bytes=None,
                )
                session.write(data)
                upload_ids[on] = session.finish(filename="bench.bin").upload_id
                seconds[on] += time.perf_counter() - began
        store = services[False].store
        keys = list(store.redis.scan_iter(match=f"{store.prefix}:*"))
        if keys:
            store.redis.delete(*keys)
        for on, upload_id in upload_ids.items():
            if upload_id:
                services[on].storage.delete(upload_id)
    return {on: seconds[on] / chunks * 1e6 for on in (False, True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rounds = args.rounds or (2 if args.quick else 5)
    chunks = 500 if args.quick else 2000
    workloads = WORKLOADS["quick" if args.quick else "full"]
    work = BENCH / ".work"
    run_dir = work / "metrics"
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    run_dir.mkdir(parents=True)
    source = make_source(work / "source-metrics.bin", max(size for _, size, _ in workloads))

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()

    servers = []
    for on in (0, 1):
        setup = Setup(run_dir / f"metrics{on}")
        server = setup.chunky("gevent")
        server.name, server.label = f"metrics-{on}", f"CHUNKY_METRICS={on}"
        server.env.update(CHUNKY_METRICS=str(on))
        server.env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # gunicorn.conf.py makes one when on
        servers.append(server)
    results: dict[str, dict[str, list]] = {}
    scrape_ms: list[float] = []
    observer: dict[bool, list[float]] = {}
    try:
        for server in servers:
            server.start(run_dir)
        for server in servers:
            server.wait_healthy()
        for round_no in range(rounds):
            for on, us in in_process(chunks, run_dir).items():
                row = results.setdefault("UploadService, one 64 KiB chunk", {})
                row.setdefault(f"metrics-{int(on)}", []).append((1e6 / us, us / 1000))
            for name, size, chunk in workloads:
                # Off first in even rounds, on first in odd ones: an order's bias falls on both.
                for server in servers if round_no % 2 == 0 else servers[::-1]:
                    result = upload(server.protocol(), str(source), size, chunk)
                    row = results.setdefault(name, {}).setdefault(server.name, [])
                    row.append((result.mb_s, statistics.median(result.chunk_ms)))
                    server.wipe()
            scrape_ms.append(_scrape_ms(servers[1].url))
            for multiprocess in (False, True):
                observer.setdefault(multiprocess, []).append(observer_us(multiprocess, run_dir))
            print(f"metrics_cost: round {round_no + 1}/{rounds} done", flush=True)
    finally:
        for server in servers:
            server.stop()

    text = table(results, rounds, statistics.median(scrape_ms))
    single, multi = (statistics.median(observer[m]) for m in (False, True))
    text += (
        f"\nThe metrics' own work per recorded chunk (PrometheusObserver.chunk_recorded, 100,000 "
        f"calls): {single:.2f} µs in one process, {multi:.2f} µs in multiprocess mode."
    )
    print(text)
    out = work / "results" if args.quick else BENCH / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics_cost.md").write_text(text + "\n")
    extra = {"scrape_ms": scrape_ms, "observer_us": {str(k): v for k, v in observer.items()}}
    (out / "metrics_cost.json").write_text(json.dumps({**results, **extra}, indent=1))
    return 0


_OBSERVER_CALL = """
import os, sys, time
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django; django.setup()
from chunky_redis.core.records import Upload
from chunky_redis.metrics import OBSERVER
upload, count = Upload(upload_id="b" * 32), 100_000
started = time.perf_counter()
for _ in range(count):
    OBSERVER.chunk_recorded(upload, 65536, 0.01, False)
print((time.perf_counter() - started) / count * 1e6)
"""


def observer_us(multiprocess: bool, work: Path) -> float:
    """Microseconds one recorded chunk costs the metrics themselves (a counter, two histograms)."""
    env = dict(os.environ, PYTHONPATH=str(BENCH.parent))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if multiprocess:
        directory = work / "multiproc"
        subprocess.run(["rm", "-rf", str(directory)], check=True)
        directory.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    out = subprocess.run(
        [sys.executable, "-c", _OBSERVER_CALL], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def _scrape_ms(url: str) -> float:
    import requests

    started = time.perf_counter()
    response = requests.get(url + "/metrics", timeout=10)
    assert response.status_code == 200 and "chunky_redis_uploads_started_total" in response.text
    return (time.perf_counter() - started) * 1000


def table(results: dict[str, dict[str, list]], rounds: int, scrape_ms: float) -> str:
    lines = [
        f"CHUNKY_METRICS=1 vs 0 (gunicorn gevent 2 workers, median of {rounds} round(s))",
        "",
        "| workload | metrics off | metrics on | throughput ratio on/off | median chunk latency |",
        "|---|---|---|---|---|",
    ]
    lines += paired_rows(
        results,
        "metrics-0",
        "metrics-1",
        lambda name: "chunks/s" if name.startswith("UploadService") else "MB/s",
        digits=3,
    )
    lines += ["", f"One scrape of /metrics (2 gunicorn workers, multiprocess): {scrape_ms:.1f} ms."]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
