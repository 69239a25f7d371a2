"""``python -m bench scaling``: how throughput grows with web processes and Celery workers.

Two measurements, each a ratio to its own 1-process row of the same run:

- web: N gunicorn gevent processes (the production config) behind the sample nginx (streaming,
  the sample's rule for gevent); several uploads at once (8 x 64 MiB in 4 MiB chunks). Aggregate
  MB/s, chunk latency p50/p99 and the CPU time the web processes and nginx spent per chunk.
- celery: N prefork workers of concurrency 1; a batch of uploads is sent first, then every
  completion is requested at once. Batch time (first completion request to the last finalization's
  end), and per upload the queue delay (completion request sent -> task started) and the finalization
  duration (task start -> end), from Celery's task signals (``bench/celery_timing.py``).

Writes ``scaling.json`` (also the calculator's calibration, ``bench/capacity.py``), ``scaling.md``
and ``scaling.png`` to bench/results/scaling/ (``--quick``: bench/.work/scaling).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .client import Chunky, Connection, check, upload
from .front import front
from .servers import BENCH, REPO, Server, Setup, clean_redis, tree
from .workloads import parallel_uploads, wait_worker_ready

MiB = 1 << 20
PROCESSES = [1, 2, 4]
SIZES = {
    "full": dict(uploads=8, each=64 * MiB, chunk=4 * MiB, rounds=3, batch=100, batch_each=4 * MiB),
    "quick": dict(uploads=4, each=16 * MiB, chunk=4 * MiB, rounds=1, batch=30, batch_each=MiB),
}
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- web processes ------------------------------------------------------------------------------


def concurrent_uploads(server: Server, source: str, sizes: dict) -> dict:
    n, each = sizes["uploads"], sizes["each"]
    backend_pids = tree(server.backend.proc.pid)  # type: ignore[attr-defined]
    nginx_pids = tree(server.proc.pid)
    cpu0, nginx0 = cpu_seconds(backend_pids), cpu_seconds(nginx_pids)
    results, seconds = parallel_uploads(lambda: Chunky(server.url), source, n, each, sizes["chunk"])
    chunks = [ms for r in results for ms in r.chunk_ms]
    return {
        "mb_s": n * each / seconds / 1e6,
        "seconds": seconds,
        "chunk_p50_ms": percentile(chunks, 0.5),
        "chunk_p99_ms": percentile(chunks, 0.99),
        "chunks": len(chunks),
        "web_cpu_ms_per_chunk": (cpu_seconds(backend_pids) - cpu0) * 1000 / len(chunks),
        "nginx_cpu_ms_per_chunk": (cpu_seconds(nginx_pids) - nginx0) * 1000 / len(chunks),
    }


def run_web(setup: Setup, source: str, sizes: dict, logs: Path) -> list[dict]:
    servers = []
    for n in PROCESSES:
        backend = setup.chunky("gevent", workers=n)
        backend.name = f"gevent-{n}"
        servers.append((n, front(backend, setup.work, buffering=False)))
    rows: list[dict] = []
    try:
        for _, s in servers:
            s.start(logs)
        for _, s in servers:
            s.wait_healthy()
        for rnd in range(sizes["rounds"]):
            # interleaved, each round in another order, so drift on a shared machine spreads out
            order = servers[rnd % len(servers) :] + servers[: rnd % len(servers)]
            for n, s in order:
                value = concurrent_uploads(s, source, sizes)
                print(
                    f"  web x{n} round {rnd + 1}: {value['mb_s']:7.1f} MB/s  "
                    f"p50 {value['chunk_p50_ms']:6.1f} ms  p99 {value['chunk_p99_ms']:6.1f} ms  "
                    f"cpu {value['web_cpu_ms_per_chunk']:.1f} ms/chunk",
                    flush=True,
                )
                rows.append({"processes": n, "round": rnd, **value})
                s.wipe()
                os.sync()
    finally:
        for _, s in servers:
            s.stop()
    return rows


# -- Celery workers -----------------------------------------------------------------------------


def start_workers(setup: Setup, n: int, timings: Path, logs: Path) -> list[Server]:
    workers = []
    for i in range(n):
        w = setup.worker()
        w.name = f"celery-{n}-{i}"
        w.env["CHUNKY_BENCH_TIMINGS"] = str(timings)
        w.args[w.args.index("tasks")] = "bench.celery_timing"
        w.args[w.args.index("-n") + 1] = f"{setup.key_prefix}-{n}-{i}@%h"
        w.start(logs)
        workers.append(w)
    for w in workers:
        wait_worker_ready(w)
    return workers


def finish_batch(web: Server, source: str, sizes: dict, timings: Path) -> dict:
    k, each = sizes["batch"], sizes["batch_each"]
    with ThreadPoolExecutor(4) as pool:
        sent = list(
            pool.map(
                lambda i: upload(Chunky(web.url), source, each, each, file_offset=i * each),
                range(k),
            )
        )
    timings.write_text("")
    accepted: dict[str, float] = {}

    def complete(result) -> None:
        conn = Connection(web.url)
        body = json.dumps({"md5": result.md5}).encode()
        path = f"/upload/{result.key}/"
        accepted[result.key] = (
            time.time() * 1000
        )  # the request's start: the task may begin before the answer arrives
        check(conn.request("POST", path, {"Content-Type": "application/json"}, body), 200, 202)
        conn.close()

    t0 = time.time() * 1000
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(complete, sent))
    deadline = time.monotonic() + 600
    while True:
        lines = [json.loads(x) for x in timings.read_text().splitlines() if x.strip()]
        done = {x["upload_id"]: x for x in lines if x["status"] == "complete"}
        if len(done) >= k:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(done)} of {k} uploads finished")
        time.sleep(0.05)
    delays = [done[key]["start_ms"] - accepted[key] for key in accepted]
    durations = [x["end_ms"] - x["start_ms"] for x in done.values()]
    batch_s = (max(x["end_ms"] for x in done.values()) - t0) / 1000
    return {
        "batch_s": batch_s,
        "uploads_per_s": k / batch_s,
        "queue_delay_p50_ms": percentile(delays, 0.5),
        "queue_delay_p99_ms": percentile(delays, 0.99),
        "finalize_p50_ms": percentile(durations, 0.5),
        "finalize_p99_ms": percentile(durations, 0.99),
        "worker_pids": len({x["pid"] for x in done.values()}),
    }


def run_celery(setup: Setup, source: str, sizes: dict, logs: Path) -> list[dict]:
    web = setup.chunky("gevent", workers=2)
    web.name = "celery-web"
    rows: list[dict] = []
    web.start(logs)
    try:
        web.wait_healthy()
        for n in PROCESSES:
            timings = setup.work / f"timings-{n}.jsonl"
            workers = start_workers(setup, n, timings, logs)
            try:
                # warm-up, untimed: each worker's first task pays for imports and connections
                finish_batch(web, source, {**sizes, "batch": 2 * n}, timings)
                value = finish_batch(web, source, sizes, timings)
            finally:
                for w in workers:
                    w.stop()
            print(
                f"  celery x{n}: {sizes['batch']} uploads in {value['batch_s']:.2f} s  "
                f"queue delay p50 {value['queue_delay_p50_ms']:.0f} ms  "
                f"finalize p50 {value['finalize_p50_ms']:.0f} ms",
                flush=True,
            )
            rows.append({"workers": n, **value})
            web.wipe()
    finally:
        web.stop()
    return rows


# -- summary ------------------------------------------------------------------------------------


def summarize(web_rows: list[dict], celery_rows: list[dict]) -> dict:
    web = []
    for n in PROCESSES if web_rows else []:
        mine = [r for r in web_rows if r["processes"] == n]
        web.append(
            {
                "processes": n,
                **{
                    key: statistics.median(r[key] for r in mine)
                    for key in (
                        "mb_s",
                        "chunk_p50_ms",
                        "chunk_p99_ms",
                        "web_cpu_ms_per_chunk",
                        "nginx_cpu_ms_per_chunk",
                    )
                },
            }
        )
    for row in web:
        row["ratio"] = row["mb_s"] / web[0]["mb_s"] if web[0]["mb_s"] else 0.0
    for row in celery_rows:
        row["ratio"] = celery_rows[0]["batch_s"] / row["batch_s"]
    return {"web": web, "celery": celery_rows}


def render(data: dict) -> str:
    s = data["sizes"]
    lines = [
        f"Web processes (gunicorn gevent behind the sample nginx): {s['uploads']} concurrent uploads "
        f"of {s['each'] >> 20} MiB in {s['chunk'] >> 20} MiB chunks, median of {s['rounds']} "
        f"interleaved round(s). {data['host']['cores']} cores, shared (load average at the start "
        f"{data['host']['loadavg']}).",
        "",
        "| web processes | MB/s | x 1 process | chunk p50 ms | chunk p99 ms | web CPU ms/chunk | nginx CPU ms/chunk |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["summary"]["web"]:
        lines.append(
            f"| {r['processes']} | {r['mb_s']:.0f} | {r['ratio']:.2f} | {r['chunk_p50_ms']:.1f} | "
            f"{r['chunk_p99_ms']:.1f} | {r['web_cpu_ms_per_chunk']:.1f} | {r['nginx_cpu_ms_per_chunk']:.1f} |"
        )
    lines += [
        "",
        f"Celery workers (prefork, concurrency 1 each): {s['batch']} uploads of "
        f"{s['batch_each'] >> 10} KiB, every completion requested at once.",
        "",
        "| workers | batch s | uploads/s | x 1 worker | queue delay p50 ms | p99 ms | finalization p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["summary"]["celery"]:
        lines.append(
            f"| {r['workers']} | {r['batch_s']:.2f} | {r['uploads_per_s']:.1f} | {r['ratio']:.2f} | "
            f"{r['queue_delay_p50_ms']:.0f} | {r['queue_delay_p99_ms']:.0f} | "
            f"{r['finalize_p50_ms']:.0f} | {r['finalize_p99_ms']:.0f} |"
        )
    return "\n".join(lines)


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    web, celery = data["summary"]["web"], data["summary"]["celery"]
    xs = [r["processes"] for r in web]
    left.plot(xs, [r["ratio"] for r in web], "o-", label="upload MB/s")
    left.plot(
        [r["workers"] for r in celery], [r["ratio"] for r in celery], "s-", label="finalizations/s"
    )
    left.plot(xs, xs, ":", color="grey", label="linear")
    left.axhline(data["host"]["cores"], ls="--", color="red", lw=0.8, label="cores on this host")
    left.set_xlabel("processes")
    left.set_ylabel("x the 1-process row")
    left.set_xticks(xs)
    left.legend(fontsize=8)
    left.set_title("throughput vs processes")
    right.plot(xs, [r["chunk_p50_ms"] for r in web], "o-", label="chunk p50")
    right.plot(xs, [r["chunk_p99_ms"] for r in web], "o--", label="chunk p99")
    right.set_xlabel("web processes")
    right.set_ylabel("ms per 4 MiB chunk")
    right.set_xticks(xs)
    right.legend(fontsize=8)
    right.set_title("chunk latency")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(data: dict, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    text = render(data)
    (out / "scaling.json").write_text(json.dumps(data, indent=1) + "\n")
    (out / "scaling.md").write_text(text + "\n")
    plot(data, out / "scaling.png")
    return text


def main(argv: list[str] | None = None) -> int:
    from .__main__ import machine, make_source

    parser = argparse.ArgumentParser(prog="python -m bench scaling", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--out", default=None)
    parser.add_argument("--only", choices=["web", "celery"], default=None)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = SIZES["quick" if args.quick else "full"]
    out = (
        Path(args.out)
        if args.out
        else BENCH / ("results/scaling" if not args.quick else ".work/scaling")
    )
    work = BENCH / ".work" / "scaling-run"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    need = max(sizes["uploads"] * sizes["each"], sizes["batch"] * sizes["batch_each"])
    source = str(make_source(BENCH / ".work" / f"source-{need >> 20}M.bin", need))
    setup = Setup(work)
    host = machine()
    started = time.monotonic()
    try:
        web = run_web(setup, source, sizes, work) if args.only != "celery" else []
        celery = run_celery(setup, source, sizes, work) if args.only != "web" else []
    finally:
        clean_redis(setup.key_prefix)
    previous = out / "scaling.json"
    data = {
        "host": host,
        "sizes": sizes,
        "quick": args.quick,
        "web_rounds": web,
        "celery_rows": celery,
    }
    if args.only and previous.exists():  # keep the other half of an earlier run
        old = json.loads(previous.read_text())
        data["web_rounds"] = web or old.get("web_rounds", [])
        data["celery_rows"] = celery or old.get("celery_rows", [])
    data["summary"] = summarize(data["web_rounds"], data["celery_rows"])
    data["seconds"] = time.monotonic() - started
    print(write(data, out))
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    print(f"bench scaling: {data['seconds']:.0f} s; results in {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
