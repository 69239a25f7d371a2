"""What 1,000 trickling connections cost one gevent worker, and where a status read's time goes.

    python -m bench.crowd_profile [--conns 1000] [--seconds 15] [--variant gevent|gthread]

One worker of the bundled site. Three stretches of ``--seconds`` each: status reads alone (a new
connection every 50 ms, as in the ``slow`` workload), then the crowd's connections trickling a
chunk body at 1 byte/s while nothing else runs (the worker's CPU per second: what the crowd
costs), then status reads again with the crowd, under py-spy. Prints the reads' p50/p99 both
times, the crowd's CPU share and py-spy's busiest functions (idle samples left out);
the collapsed stacks go to bench/.work/crowd-<variant>.txt.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import subprocess
import sys
import time

from . import slow
from .cpucost import cpu_seconds
from .profile import summarize
from .servers import BENCH, BIN, Server, Setup, clean_redis, tree


def probe(server: Server, target: tuple[str, str, dict[str, str]], seconds: float) -> str:
    ctx = mp.get_context("fork")
    out, stop = ctx.Queue(), ctx.Event()
    prober = ctx.Process(target=slow._prober, args=(server.url, target, 0.05, stop, out))
    prober.start()
    time.sleep(seconds)
    stop.set()
    ms = sorted(out.get(timeout=60)["ms"])
    prober.join()
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"{len(ms)} reads, p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crowd_profile")
    parser.add_argument("--conns", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--variant", default="gevent")
    args = parser.parse_args(argv)
    work = BENCH / ".work" / "crowd-run"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    slow.raise_open_file_limit(args.conns + 1024)
    setup = Setup(work)
    server = setup.chunky(args.variant, workers=1)
    collapsed = BENCH / ".work" / f"crowd-{args.variant}.txt"
    ctx = mp.get_context("fork")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    crowd = ctx.Process(
        target=slow._crowd,
        args=(server.url, "chunky", args.conns, 4 * args.seconds + 120, ready, stop, out),
    )
    try:
        server.start(work)
        server.wait_healthy()
        assert server.proc is not None
        worker = tree(server.proc.pid)[-1]
        target = slow.status_target(server)
        print("alone:      ", probe(server, target, args.seconds), flush=True)
        crowd.start()
        if not ready.wait(120):
            raise RuntimeError("the crowd did not open its connections in time")
        time.sleep(3)
        user0, system0 = cpu_seconds(server.proc.pid)
        time.sleep(args.seconds)
        user1, system1 = cpu_seconds(server.proc.pid)
        share = (user1 - user0 + system1 - system0) / args.seconds
        print(f"crowd alone: {100 * share:.1f}% of a core ({args.conns} connections)", flush=True)
        spy = subprocess.Popen(
            [str(BIN / "py-spy"), "record", "--pid", str(worker), "--rate", "500"]
            + ["--format", "raw", "--output", str(collapsed), "--nonblocking", "--threads"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
        print("with crowd: ", probe(server, target, args.seconds), flush=True)
        spy.send_signal(2)
        spy.wait(timeout=30)
    finally:
        stop.set()
        if crowd.is_alive() or crowd.exitcode is not None:
            print("crowd:", out.get(timeout=60), flush=True)
            crowd.join()
        server.stop()
        clean_redis(setup.key_prefix)
    print(summarize(collapsed, top=25, focus=""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
