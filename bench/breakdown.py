"""Where a chunk request's server time goes (issue 11): read, hash, write, sync, Redis, framework.

    python -m bench breakdown [--chunks 64,1024,8192] [--rounds 3] [--variant gevent|gthread]

One gunicorn worker of the bundled site (``deploy/gunicorn.conf.py``, gevent unless told) with
timers wrapped around its parts by the benchmark's own WSGI module (``bench/breakdown_app.py``:
the service as deployed has none), one client uploading at a time. Each round uploads at every
chunk size in turn; a cell is the median over rounds of the mean per chunk request, in ms.
Writes ``bench/results/breakdown.{json,md}`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from .client import Connection, upload
from .servers import BENCH, Server, Setup, clean_redis

MiB = 1 << 20
# Bytes per upload at each chunk size: enough requests for a stable mean, short enough to repeat.
UPLOAD_BYTES = {64: 32 * MiB, 256: 64 * MiB, 1024: 128 * MiB, 8192: 256 * MiB}
COLUMNS = (
    "read",
    "hash",
    "write",
    "sync",
    "redis",
    "framework",
    "helper_wait",
    "sync_wait",
    "total",
    "client",
)


def totals(server: Server) -> dict:
    conn = Connection(server.url)
    try:
        return conn.request("GET", "/__breakdown__").json()
    finally:
        conn.close()


def per_request(raw: dict, client_ms: list[float]) -> dict[str, float]:
    n = max(raw["requests"], 1)
    ms = {part: seconds * 1000 / n for part, seconds in raw["seconds"].items()}
    # What is left of the request on its own thread once its waits and its own I/O are out.
    ms["framework"] = ms["total"] - (
        ms["read"] + ms["redis"] + ms["sync_wait"] + ms["helper_wait"] + ms["inline"]
    )
    ms["client"] = statistics.mean(client_ms)
    return ms


def measure(server: Server, source: str, chunk_kib: int) -> dict[str, float]:
    size = UPLOAD_BYTES.get(chunk_kib, 64 * MiB)
    totals(server)  # zero
    result = upload(server.protocol(), source, size, chunk_kib << 10)
    cells = per_request(totals(server), result.chunk_ms)
    cells["mb_s"] = result.mb_s
    server.wipe()
    return cells


def table(rows: dict[int, list[dict]], label: str) -> str:
    lines = [
        f"Server time per chunk request, ms ({label}, one worker, one client; median of "
        f"{len(next(iter(rows.values())))} rounds of the mean per request). Hash and write run on "
        "a helper thread for blocks of 256 KiB and more with more of the chunk after them, "
        "overlapping the next read: the request waits only for what is left of them (helper "
        "wait); the block that completes a chunk, and smaller ones, run on the request's own "
        "thread. With a sync per chunk, the request waits for it at the end (sync wait). Deferred "
        "durability's window syncs run in the background, after the answer: they count under "
        "sync, not as a wait. Framework: the rest of the request's "
        "own time (Django, middleware, the view, JSON). Client: the whole request as the client "
        "saw it (gunicorn's parsing and loopback included).",
        "",
        "| chunk | read | hash | write | sync | Redis | framework | helper wait | sync wait "
        "| server total | client | MB/s |",
        "|---|" + "---:|" * 11,
    ]
    for chunk, runs in rows.items():
        cell = {k: statistics.median(r[k] for r in runs) for k in COLUMNS + ("mb_s",)}
        name = f"{chunk} KiB" if chunk < 1024 else f"{chunk // 1024} MiB"
        lines.append(
            f"| {name} | "
            + " | ".join(f"{cell[k]:.2f}" for k in COLUMNS)
            + f" | {cell['mb_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench breakdown")
    parser.add_argument("--chunks", default="64,1024,8192", help="KiB per chunk, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variant", default="gevent", choices=("gevent", "gthread"))
    parser.add_argument("--out", default=str(BENCH / "results"))
    args = parser.parse_args(argv)
    chunks = [int(c) for c in args.chunks.split(",")]
    work = BENCH / ".work" / "breakdown-run"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    need = max(UPLOAD_BYTES.get(c, 64 * MiB) for c in chunks)
    source = BENCH / ".work" / f"breakdown-source-{need >> 20}M.bin"
    if not source.exists():
        with open(source, "wb") as f, open("/dev/urandom", "rb") as rnd:
            for _ in range(need >> 20):
                f.write(rnd.read(MiB))
    setup = Setup(work)
    server = setup.chunky(args.variant, workers=1, threads=4)
    server.args[-1] = "bench.breakdown_app:application"
    rows: dict[int, list[dict]] = {c: [] for c in chunks}
    try:
        server.start(work)
        server.wait_healthy()
        upload(server.protocol(), str(source), 4 * MiB, 256 << 10)  # warm up
        for r in range(args.rounds):
            for chunk in chunks:
                cells = measure(server, str(source), chunk)
                rows[chunk].append(cells)
                print(
                    f"round {r + 1} {chunk:>5} KiB "
                    + " ".join(f"{k} {cells[k]:.2f}" for k in COLUMNS),
                    flush=True,
                )
    finally:
        server.stop()
        clean_redis(setup.key_prefix)
    label = f"gunicorn {args.variant}"
    text = table(rows, label)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.variant == "gevent" else f"-{args.variant}"
    (out / f"breakdown{suffix}.json").write_text(
        json.dumps({"variant": args.variant, "load": os.getloadavg(), "rows": rows}, indent=1)
    )
    (out / f"breakdown{suffix}.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
