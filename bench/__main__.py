"""``python -m bench`` (``make bench``): every server, every workload, one run, one table.

python -m bench                 the full run (committed results come from it; about 40 minutes with 3 rounds here)
python -m bench --quick         small sizes, one round: a smoke run of a minute or two
python -m bench --servers null-work,chunky-gthread --workloads w1,w2
python -m bench scaling         1, 2 and 4 web processes and Celery workers (bench/scaling.py)
python -m bench ab here @main   this tree against a git revision, the order rotating (bench/ab.py)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import report, slow, tus_dialect, workloads
from .front import front
from .servers import BENCH, REPO, Setup, clean_redis

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

SIZES = {
    "full": dict(
        w1=GiB,
        w1_chunk=8 * MiB,
        w2=64 * MiB,
        w2_chunk=64 * KiB,
        w3_each=128 * MiB,
        w3_chunk=4 * MiB,
        w4=[16 * MiB, 256 * MiB],
        w5=256 * MiB,
        sweep=256 * MiB,
        sweep_chunks=[256 * KiB, 1 * MiB, 32 * MiB],
        rounds=3,
        slow_conns=1000,
        slow_upload=GiB,
        slow_chunk_timeout=30,
        slow_seconds=600,
        slow_settle=5,
        tus=[(GiB, 8 * MiB), (64 * MiB, 64 * KiB), (256 * MiB, MiB)],
    ),
    "quick": dict(
        w1=128 * MiB,
        w1_chunk=8 * MiB,
        w2=8 * MiB,
        w2_chunk=64 * KiB,
        w3_each=16 * MiB,
        w3_chunk=4 * MiB,
        w4=[16 * MiB, 64 * MiB],
        w5=64 * MiB,
        sweep=32 * MiB,
        sweep_chunks=[256 * KiB, 1 * MiB],
        rounds=1,
        slow_conns=200,
        slow_upload=128 * MiB,
        slow_chunk_timeout=10,
        slow_seconds=180,
        slow_settle=3,
        tus=[(128 * MiB, 8 * MiB), (8 * MiB, 64 * KiB), (32 * MiB, MiB)],
    ),
}

ALL_SERVERS = [
    "null-discard",
    "null-work",
    "chunky-gevent",
    "chunky-gevent-nginx",
    "chunky-gthread",
    "chunky-gthread-nginx",
    "chunky-asgi",
    "chunky-gthread-nofsync",
    "chunky-gevent-deferred",
    "chunky-gevent-eachchunk",
    "chunky-sync",
    "chunky-pyuwsgi",
    "chunky-granian",
    "django-chunked-upload",
    "tus",
]
# The -deferred servers' CHUNKY_SYNC_EVERY (issue 11's deferred durability; the bundled site's
# default since), and the -eachchunk servers' (an fdatasync per chunk, the library's default).
DEFERRED_SYNC_EVERY = 16 << 20
SUFFIX_SYNC_EVERY = {"-deferred": DEFERRED_SYNC_EVERY, "-eachchunk": 0}
ALL_WORKLOADS = ["w1", "w1mp", "w2", "w3", "sweep", "w4", "w5", "slow", "tus"]


def make_source(path: Path, size: int) -> Path:
    if path.exists() and path.stat().st_size == size:
        return path
    print(f"bench: writing {size >> 20} MiB of random bytes to {path}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for _ in range(size // (8 * MiB)):
            f.write(os.urandom(8 * MiB))
        f.write(os.urandom(size % (8 * MiB)))
    return path


def build_servers(setup: Setup, names: list[str]):
    servers = []
    for name in names:
        if name.startswith("null-"):
            servers.append(setup.null(name[5:]))
        elif name.startswith("chunky-") and name.endswith("-nginx"):
            # the sample nginx's rule: buffer in front of threads and processes, stream to gevent
            backend = setup.chunky(name[7:-6])
            servers.append(front(backend, setup.work, buffering=name != "chunky-gevent-nginx"))
        elif name.startswith("chunky-"):
            variant = name[7:].removesuffix("-nofsync")
            sync_every = None  # the site's default, or CHUNKY_SYNC_EVERY of the environment
            for suffix, value in SUFFIX_SYNC_EVERY.items():
                if variant.endswith(suffix):
                    variant, sync_every = variant.removesuffix(suffix), value
            servers.append(
                setup.chunky(variant, fsync=not name.endswith("-nofsync"), sync_every=sync_every)
            )
        elif name == "django-chunked-upload":
            servers.append(setup.dcu())
        elif name == "tus":
            servers.append(setup.tus())
        else:
            raise SystemExit(f"unknown server {name}; known: {', '.join(ALL_SERVERS)}")
    return servers


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    versions = {}
    for mod in ("django", "gunicorn", "redis", "celery", "granian"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            pass
    try:
        versions["node"] = subprocess.run(
            ["node", "--version"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / GiB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def render(data: dict) -> str:
    """The tables of a run: the throughput workloads', then the slow clients' (when they ran)."""
    parts = [report.table(data)] if data["results"] else []
    if data.get("slow"):
        parts.append(slow.table(data["slow"], data["servers"], data["sizes"]))
    if data.get("tus"):
        parts.append(tus_dialect.table(data["tus"]))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["scaling"]:  # python -m bench scaling: web processes and Celery workers
        from .scaling import main as scaling

        return scaling(argv[1:])
    if argv[:1] == ["ab"]:  # python -m bench ab: one version against another, order rotating
        from .ab import main as ab

        return ab(argv[1:])
    if argv[:1] == ["breakdown"]:  # python -m bench breakdown: a chunk request's parts (issue 11)
        from .breakdown import main as breakdown

        return breakdown(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (median reported)")
    parser.add_argument("--servers", default=",".join(ALL_SERVERS))
    parser.add_argument("--workloads", default=",".join(ALL_WORKLOADS))
    parser.add_argument(
        "--out",
        default=None,
        help="results folder (default bench/results, or bench/.work/results for --quick)",
    )
    parser.add_argument(
        "--replot", action="store_true", help="rebuild the table and plot from results.json"
    )
    args = parser.parse_args(argv)
    # A SIGTERM (timeout, CI) must still stop the servers: they run in their own sessions.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = Path(args.out) if args.out else BENCH / ("results" if not args.quick else ".work/results")
    if args.replot:
        data = json.loads((out / "results.json").read_text())
        text = render(data)
        print(text)
        report.write(data, text, out)
        return 0
    sizes = dict(SIZES["quick" if args.quick else "full"])
    if args.rounds:
        sizes["rounds"] = args.rounds
    names = [s for s in args.servers.split(",") if s]
    chosen = [w for w in args.workloads.split(",") if w]
    if "null-work" not in names:
        names.insert(0, "null-work")  # every figure is a ratio to it
    work = BENCH / ".work"
    run_dir = work / "run"
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    run_dir.mkdir(parents=True)
    source = make_source(
        work / f"source-{max(sizes['w1'], 8 * sizes['w3_each']) >> 20}M.bin",
        max(sizes["w1"], 8 * sizes["w3_each"]),
    )
    setup = Setup(run_dir)
    host = machine()
    servers = build_servers(setup, names)
    helpers = [setup.worker()] if any(s.kind == "chunky" for s in servers) else []
    started = time.monotonic()
    try:
        for s in helpers + servers:
            s.start(run_dir)
        for s in servers:
            s.wait_healthy()
        if helpers:
            workloads.wait_worker_ready(helpers[0])
        print(
            f"bench: {len(servers)} servers up; source {source.name}; {sizes['rounds']} round(s)",
            flush=True,
        )
        results = workloads.run_all(servers, str(source), sizes, chosen)
        slow_records = slow.run(servers, str(source), sizes) if "slow" in chosen else []
        tus_records = tus_dialect.run(servers, str(source), sizes) if "tus" in chosen else []
    finally:
        for s in servers + helpers:
            s.stop()
        if helpers:
            clean_redis(setup.key_prefix)
    elapsed = time.monotonic() - started
    data = report.assemble(results, servers, sizes, host, elapsed, quick=args.quick)
    if slow_records:
        data["slow"] = slow_records
    if tus_records:
        data["tus"] = tus_records
        data["tus_summary"] = tus_dialect.summary(tus_records)
    text = render(data)
    print(text)
    report.write(data, text, out)
    print(
        f"bench: {elapsed:.0f} s; results in {out.relative_to(REPO) if out.is_relative_to(REPO) else out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
