"""Profile the bundled site's web worker with py-spy while the benchmark client uploads.

    python -m bench.profile [--variant sync|gthread|pyuwsgi|granian] [--size MiB] [--chunk KiB] [--fsync 0|1]
                            [--dialect chunky|tus]

Writes bench/.work/profile-<variant>-<chunk>K.{txt,svg}: the collapsed stacks
(py-spy's raw format) and a flame graph, and prints the functions with the most
samples, inclusive and by themselves (self).
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import time
from pathlib import Path

from .client import Tus, upload
from .servers import BENCH, BIN, Setup, clean_redis, tree


def summarize(collapsed: Path, top: int = 30, focus: str = "WSGIHandler.__call__") -> str:
    """Self and inclusive sample shares of the frames under ``focus`` (the Django request)."""
    inclusive: collections.Counter = collections.Counter()
    own: collections.Counter = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():  # py-spy's last line, cut when it was stopped
            continue
        n = int(count)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 2)[-1] + ")"
            if " (" in f
            else f
            for f in stack.split(";")
        ]
        if focus and not any(focus in f for f in frames):
            continue
        total += n
        own[frames[-1]] += n
        if focus and not any(focus in f for f in frames):
            continue
        for f in set(frames):
            inclusive[f] += n
    out = [f"{total} samples", "", "self:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out += ["", "inclusive:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--variant", default="sync")
    parser.add_argument("--size", type=int, default=512, help="MiB uploaded")
    parser.add_argument("--chunk", type=int, default=8192, help="KiB per chunk")
    parser.add_argument("--fsync", type=int, default=1)
    parser.add_argument("--idle", action="store_true", help="count idle (waiting) samples too")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--dialect", choices=("chunky", "tus"), default="chunky")
    args = parser.parse_args()
    work = BENCH / ".work"
    run_dir = work / "profile-run"
    subprocess.run(["rm", "-rf", str(run_dir)], check=True)
    run_dir.mkdir(parents=True)
    source = work / "profile-source.bin"
    if not source.exists() or source.stat().st_size < args.size << 20:
        with open(source, "wb") as f:
            f.write(
                subprocess.run(
                    ["head", "-c", str(args.size << 20), "/dev/urandom"], capture_output=True
                ).stdout
            )
    setup = Setup(run_dir)
    server = setup.chunky(args.variant, workers=1, threads=4, fsync=bool(args.fsync))
    name = f"profile-{args.variant}-{args.chunk}K" + ("-tus" if args.dialect == "tus" else "")
    collapsed, svg = work / f"{name}.txt", work / f"{name}.svg"
    try:
        server.start(run_dir)
        server.wait_healthy()
        pids = tree(server.proc.pid)
        worker = pids[-1] if args.variant != "granian" else server.proc.pid
        spies = [
            subprocess.Popen(
                [
                    str(BIN / "py-spy"),
                    "record",
                    "--pid",
                    str(worker),
                    "--rate",
                    str(args.rate),
                    "--format",
                    fmt,
                    "--output",
                    str(path),
                    "--nonblocking",
                    "--threads",
                ]
                + (["--idle"] if args.idle else [])
                + (["--subprocesses"] if args.variant == "granian" else []),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for fmt, path in (("raw", collapsed), ("flamegraph", svg))
        ]
        time.sleep(1.0)
        protocol = Tus(server.url) if args.dialect == "tus" else server.protocol()
        result = upload(protocol, str(source), args.size << 20, args.chunk << 10)
        print(
            f"{result.mb_s:.1f} MB/s, median {sorted(result.chunk_ms)[len(result.chunk_ms) // 2]:.2f} ms/chunk"
        )
        for spy in spies:
            spy.send_signal(2)
            spy.wait(timeout=30)
    finally:
        server.stop()
        clean_redis(setup.key_prefix)
    print(summarize(collapsed))
    print(f"\nflame graph: {svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
