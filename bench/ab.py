"""One version of the service against another, in one run, each server taking every place in turn.

    python -m bench ab [--chunk-kib 64] [--size-mib 64] [--rounds 8] [--parallel N] SERVER SERVER ...

SERVER is one of:
- ``here``: the bundled site under gunicorn gevent, on this working tree's code;
- ``@REF``: the same on git revision REF (exported to bench/.work, as ``bench.cpucost --baseline``);
- either with ``:KEY=VALUE;KEY=VALUE`` after it: those environment variables set (a setting of
  the site, a server option);
- ``tus`` (@tus/server 2.4.5), ``null-work`` or ``null-discard`` (bench/nullserver.py).

Each round uploads ``--size-mib`` in ``--chunk-kib`` chunks to every server in turn (with
``--parallel N``, N uploads at once, as ``make bench``'s 8 uploads at once), each upload after the
servers' files were removed and ``os.sync()`` ran. The order rotates by one place each round, so
over a multiple of the number of servers every server has run in every place equally often: with a
fixed order, the same code measured twice (``here here:AA=1``) differed by 10% for 8 uploads at
once, by its place alone (docs/performance.md). Each server gets one warm-up upload first. The
figure for each server is the median of its per-round ratio to the first server, with the lowest
and highest round; run the same code twice (an A/A) to see what this machine's noise is before
reading a difference into an A/B.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .__main__ import make_source
from .client import upload
from .cpucost import at_revision
from .servers import BENCH, Server, Setup, clean_redis
from .workloads import parallel_uploads, wait_worker_ready


def rotation(items: Sequence[str], round_index: int) -> list[str]:
    """The order of round ``round_index``: shifted by one place per round."""
    k = round_index % len(items)
    return [*items[k:], *items[:k]]


def summary(results: dict[str, list[float]], reference: str) -> list[dict]:
    """Per server: median MB/s, and its per-round ratio to ``reference`` (median, lowest,
    highest). Rounds are paired by position in the lists (the same round)."""
    rows = []
    for name, values in results.items():
        ratios = [a / b for a, b in zip(values, results[reference], strict=True)]
        rows.append(
            {
                "server": name,
                "mb_s": statistics.median(values),
                "rounds": values,
                "ratio": statistics.median(ratios),
                "lowest": min(ratios),
                "highest": max(ratios),
            }
        )
    return rows


def table(rows: list[dict], reference: str) -> str:
    lines = [f"| server | MB/s (median) | per-round ratio to {reference} |", "|---|---:|---|"]
    for row in rows:
        lines.append(
            f"| {row['server']} | {row['mb_s']:.1f} | "
            f"{row['ratio']:.2f} [{row['lowest']:.2f}, {row['highest']:.2f}] |"
        )
    return "\n".join(lines)


def build(setup: Setup, spec: str) -> Server:
    """The server a SERVER argument names (see the module's docstring)."""
    base, _, assignments = spec.partition(":")
    if base in ("tus", "null-work", "null-discard"):
        if assignments:
            raise SystemExit(f"{spec}: only here and @REF take KEY=VALUE")
        return setup.tus() if base == "tus" else setup.null(base.removeprefix("null-"))
    if base != "here" and not base.startswith("@"):
        raise SystemExit(f"unknown server {spec!r}: here, @REF, tus, null-work or null-discard")
    server = setup.chunky("gevent")
    server.name = server.label = spec
    if base.startswith("@"):
        at_revision(server, base[1:])
    server.env.update(a.split("=", 1) for a in assignments.split(";") if a)
    return server


def measure(server: Server, source: str, size: int, chunk: int, parallel: int) -> float:
    """MB/s of one upload (or of ``parallel`` at once) to ``server``."""
    if parallel > 1:
        each = size // parallel
        _, seconds = parallel_uploads(server.protocol, source, parallel, each, chunk)
        return parallel * each / seconds / 1e6
    return upload(server.protocol(), source, size, chunk).mb_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench ab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("servers", nargs="+", help="here, @REF, here:K=V, tus, null-work")
    parser.add_argument("--chunk-kib", type=int, default=64)
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=1, help="uploads at once")
    parser.add_argument("--out", default=str(BENCH / ".work" / "ab.json"))
    args = parser.parse_args(argv)
    if len(set(args.servers)) != len(args.servers):
        raise SystemExit("name each server once (an A/A: here here:AA=1)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the servers
    work = BENCH / ".work" / "ab-run"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    size, chunk = args.size_mib << 20, args.chunk_kib << 10
    source = make_source(BENCH / ".work" / f"ab-source-{args.size_mib}M.bin", size)
    setup = Setup(work)
    servers = {spec: build(setup, spec) for spec in args.servers}
    helpers = [setup.worker()] if any(s.kind == "chunky" for s in servers.values()) else []
    results: dict[str, list[float]] = {spec: [] for spec in servers}
    try:
        for s in [*helpers, *servers.values()]:
            s.start(work)
        if helpers:
            wait_worker_ready(helpers[0])
        for s in servers.values():
            s.wait_healthy()
            upload(s.protocol(), str(source), min(size, 4 << 20), chunk)  # warm-up
        for r in range(args.rounds):
            for spec in rotation(args.servers, r):
                for s in servers.values():
                    s.wipe()
                os.sync()
                mb_s = measure(servers[spec], str(source), size, chunk, args.parallel)
                results[spec].append(mb_s)
                print(f"round {r + 1} {spec:<32} {mb_s:8.1f} MB/s", flush=True)
    finally:
        for s in [*servers.values(), *helpers]:
            s.stop()
        clean_redis(setup.key_prefix)
    rows = summary(results, args.servers[0])
    Path(args.out).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(table(rows, args.servers[0]))
    return 0
