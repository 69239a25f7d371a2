"""CPU per GiB and throughput of the web server, gevent against gthread, chunk size by chunk size.

    python -m bench.cpucost [--chunks 64,1024,8192] [--size-mib 256] [--rounds 3] [--baseline REF]

CPU time is the server's process CPU (user + system of gunicorn and its workers, from
/proc/PID/stat), so a machine loaded by other work disturbs it far less than wall time. The
servers run side by side and take turns (interleaved rounds); each cell is the median of the
rounds, with the spread (min-max) beside it. ``--baseline REF`` adds the gevent server once more
running the code of git revision REF (exported to bench/.work/baseline-REF; several REFs,
comma-separated), to measure a change before/after in one run. ``--variant
NAME:KEY=VALUE;...`` adds it once more with those environment variables (a server option, a
setting of the site); ``--tus`` adds @tus/server, the reference of ``make bench``.
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
from collections.abc import Sequence
from pathlib import Path

from .client import upload
from .servers import BENCH, REPO, Server, Setup, clean_redis, tree

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(root_pid: int) -> tuple[float, float]:
    """User and system CPU of a process tree, so far (live processes only)."""
    user = system = 0
    for pid in tree(root_pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user, system = user + int(fields[11]), system + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return user / TICKS, system / TICKS


def export_revision(ref: str) -> Path:
    """The tree of git revision ``ref``, unpacked once under bench/.work."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = BENCH / ".work" / f"baseline-{sha}"
    if not (dest / ".complete").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        (dest / ".complete").touch()
    return dest


def hide_hiredis() -> Path:
    """A directory whose ``hiredis`` fails to import: first on a server's PYTHONPATH, redis-py
    falls back to its own reply parser, in Python (what a install without hiredis runs)."""
    shim = BENCH / ".work" / "no-hiredis"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "hiredis.py").write_text('raise ImportError("hidden by bench.cpucost --no-hiredis")\n')
    return shim


def servers(
    setup: Setup,
    baselines: list[str],
    sync_every: int | None = None,
    *,
    gthread: bool = True,
    no_hiredis: bool = False,
    variants: Sequence[str] = (),
    tus: bool = False,
) -> list[Server]:
    out = [setup.chunky("gevent", sync_every=sync_every)]
    for variant in variants:  # "NAME:KEY=VALUE;KEY=VALUE"
        name, _, assignments = variant.partition(":")
        other = setup.chunky("gevent", sync_every=sync_every)
        other.name, other.label = f"chunky-gevent-{name}", f"gevent, {assignments}"
        other.env.update(a.split("=", 1) for a in assignments.split(";") if a)
        out.append(other)
    if gthread:
        out.append(setup.chunky("gthread", sync_every=sync_every))
    if no_hiredis:
        plain = setup.chunky("gevent", sync_every=sync_every)
        plain.name, plain.label = "chunky-gevent-no-hiredis", "gevent, without hiredis"
        plain.env["PYTHONPATH"] = os.pathsep.join(
            [str(hide_hiredis()), plain.env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        out.append(plain)
    if tus:  # the comparison of make bench, by CPU: @tus/server computes no checksum, never syncs
        out.append(setup.tus())
    for baseline in baselines:
        old = setup.chunky("gevent", sync_every=sync_every)
        old.name, old.label = f"chunky-gevent@{baseline}", f"gevent at {baseline}"
        at_revision(old, baseline, first=[str(hide_hiredis())] if no_hiredis else [])
        out.append(old)
    return out


def at_revision(server: Server, ref: str, *, first: Sequence[str] = ()) -> None:
    """Make a bundled-site server run git revision ``ref``'s code and gunicorn configuration;
    ``first``: directories put before that code on its PYTHONPATH."""
    root = export_revision(ref)
    server.env["PYTHONPATH"] = os.pathsep.join([*first, str(root / "deploy"), str(root)])
    server.args[2] = str(root / "deploy" / "gunicorn.conf.py")
    server.cwd = root


def measure(server: Server, source: str, size: int, chunk: int) -> dict:
    assert server.proc is not None
    user0, system0 = cpu_seconds(server.proc.pid)
    result = upload(server.protocol(), source, size, chunk)
    user1, system1 = cpu_seconds(server.proc.pid)
    server.wipe()
    per_gib = (1 << 30) / size
    return {
        "mb_s": result.mb_s,
        "cpu_s_per_gib": (user1 - user0 + system1 - system0) * per_gib,
        "user_s_per_gib": (user1 - user0) * per_gib,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpucost")
    parser.add_argument("--chunks", default="64,1024,8192", help="KiB per chunk, comma-separated")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline", help="git revisions, comma-separated: also run gevent on their code"
    )
    parser.add_argument(
        "--sync-every",
        type=int,
        default=None,
        help="every server's CHUNKY_SYNC_EVERY (bytes; default: the site's)",
    )
    parser.add_argument(
        "--no-gthread", action="store_true", help="leave out the gthread server (gevent alone)"
    )
    parser.add_argument(
        "--no-hiredis",
        action="store_true",
        help="also run gevent without hiredis; the --baseline servers then run without it too",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:KEY=VALUE;KEY=VALUE: also run gevent with these environment variables "
        "(repeatable), e.g. python-parser:GUNICORN_CMD_ARGS=--http-parser=python",
    )
    parser.add_argument(
        "--tus", action="store_true", help="also run @tus/server 2.4.5 (make bench's reference)"
    )
    parser.add_argument("--out", default=str(BENCH / ".work" / "cpucost.json"))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the servers
    work = BENCH / ".work" / "cpucost-run"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    size = args.size_mib << 20
    source = BENCH / ".work" / "cpucost-source.bin"
    if not source.exists() or source.stat().st_size < size:
        with open(source, "wb") as f, open("/dev/urandom", "rb") as rnd:
            for _ in range(args.size_mib):
                f.write(rnd.read(1 << 20))
    setup = Setup(work)
    chosen = servers(
        setup,
        [b for b in (args.baseline or "").split(",") if b],
        args.sync_every,
        gthread=not args.no_gthread,
        no_hiredis=args.no_hiredis,
        variants=args.variant,
        tus=args.tus,
    )
    chunks = [int(c) for c in args.chunks.split(",")]
    cells: dict[str, dict[int, list[dict]]] = {s.name: {c: [] for c in chunks} for s in chosen}
    try:
        for s in chosen:
            s.start(work)
        for s in chosen:
            s.wait_healthy()
        for r in range(args.rounds):
            for chunk in chunks:
                for s in chosen if r % 2 == 0 else reversed(chosen):
                    cell = measure(s, str(source), size, chunk << 10)
                    cells[s.name][chunk].append(cell)
                    print(
                        f"round {r + 1} {chunk:>5} KiB {s.name:<24} {cell['mb_s']:7.1f} MB/s "
                        f"{cell['cpu_s_per_gib']:5.2f} CPU-s/GiB "
                        f"({cell['user_s_per_gib']:5.2f} user)",
                        flush=True,
                    )
    finally:
        for s in chosen:
            s.stop()
        clean_redis(setup.key_prefix)
    Path(args.out).write_text(json.dumps({"load": os.getloadavg(), "cells": cells}, indent=1))
    print(table(cells, chunks, reference=chosen[0].name))
    return 0


def _median_spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def table(cells: dict[str, dict[int, list[dict]]], chunks: list[int], reference: str) -> str:
    lines = [
        "| server | chunk KiB | MB/s | CPU-s/GiB (user) | MB/s ratio to "
        f"{reference} (per round) | CPU ratio (per round) | user CPU ratio |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for name, by_chunk in cells.items():
        for chunk in chunks:
            runs, ref = by_chunk[chunk], cells[reference][chunk]
            speed = [a["mb_s"] / b["mb_s"] for a, b in zip(runs, ref, strict=True)]
            cpu = [a["cpu_s_per_gib"] / b["cpu_s_per_gib"] for a, b in zip(runs, ref, strict=True)]
            user = [
                a["user_s_per_gib"] / b["user_s_per_gib"] for a, b in zip(runs, ref, strict=True)
            ]
            lines.append(
                f"| {name} | {chunk} | {_median_spread([x['mb_s'] for x in runs])} "
                f"| {_median_spread([x['cpu_s_per_gib'] for x in runs])} "
                f"({statistics.median(x['user_s_per_gib'] for x in runs):.2f}) "
                f"| {_median_spread(speed)} | {_median_spread(cpu)} | {_median_spread(user)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    started = time.monotonic()
    status = main()
    print(f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    sys.exit(status)
