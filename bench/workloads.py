"""The workloads of issue 5, run round by round, every server in turn (interleaved), one client."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from .client import Result, upload
from .servers import MemoryWatch, Server


def wait_worker_ready(worker: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc.poll() is not None:
            raise RuntimeError(
                "the Celery worker exited:\n" + worker.log_path.read_text(errors="replace")[-3000:]
            )
        if " ready." in worker.log_path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError("the Celery worker did not become ready")


def _settle(server: Server) -> None:
    """Drop what the last measurement wrote and flush the disk, so the next one starts level."""
    server.wipe()
    os.sync()


def _record(result: Result) -> dict:
    out = {
        "mb_s": result.mb_s,
        "chunk_ms": statistics.median(result.chunk_ms),
        "seconds": result.seconds,
    }
    if result.completion_ms is not None:
        out["completion_ms"] = result.completion_ms
    return out


def w1(server: Server, source: str, sizes: dict, *, as_multipart: bool) -> dict:
    protocol = server.protocol(as_multipart=as_multipart)
    watch = MemoryWatch(server.proc.pid)
    result = upload(protocol, source, sizes["w1"], sizes["w1_chunk"], complete=True)
    return {**_record(result), **watch.stop()}


def w2(server: Server, source: str, sizes: dict) -> dict:
    return _record(upload(server.protocol(), source, sizes["w2"], sizes["w2_chunk"]))


def parallel_uploads(
    protocol_for: Callable[[], Any], source: str, n: int, each: int, chunk: int
) -> tuple[list, float]:
    """``n`` uploads of ``each`` bytes at once, upload i from byte ``i * each`` of the source:
    their results and the seconds from the first start to the last end. An upload's error is
    raised after the others finish."""
    results: list = [None] * n
    errors: list[Exception] = []

    def one(i: int) -> None:
        try:
            results[i] = upload(protocol_for(), source, each, chunk, file_offset=i * each)
        except Exception as e:  # reported after the others finish
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return results, seconds


def w3(server: Server, source: str, sizes: dict) -> dict:
    each = sizes["w3_each"]
    results, seconds = parallel_uploads(server.protocol, source, 8, each, sizes["w3_chunk"])
    chunk_ms = [ms for r in results for ms in r.chunk_ms]
    return {
        "mb_s": 8 * each / seconds / 1e6,
        "chunk_ms": statistics.median(chunk_ms),
        "seconds": seconds,
    }


def sweep(server: Server, source: str, sizes: dict, chunk: int) -> dict:
    return _record(upload(server.protocol(), source, sizes["sweep"], chunk))


def w4(server: Server, source: str, size: int) -> dict:
    return _record(upload(server.protocol(), source, size, 8 << 20, complete=True))


def w5(server: Server, source: str, sizes: dict) -> dict:
    watch = MemoryWatch(server.proc.pid)
    result = upload(server.protocol(), source, sizes["w5"], sizes["w5"])
    return {**_record(result), **watch.stop()}


def run_all(servers: list[Server], source: str, sizes: dict, chosen: list[str]) -> list[dict]:
    records: list[dict] = []

    def measure(workload: str, server: Server, fn, *args, **kwargs) -> None:
        label = f"{workload:<12} {server.name:<24}"
        try:
            value = fn(server, source, *args, **kwargs)
            print(
                f"  {label} {value['mb_s']:8.1f} MB/s  {value['chunk_ms']:9.2f} ms/chunk"
                + (
                    f"  completion {value['completion_ms']:.0f} ms"
                    if "completion_ms" in value
                    else ""
                )
                + (
                    f"  +RSS {value['rss_increase_mib']:.0f} MiB"
                    if "rss_increase_mib" in value
                    else ""
                ),
                flush=True,
            )
        except Exception as e:
            value = {"error": f"{type(e).__name__}: {e}"[:300]}
            print(f"  {label} FAILED {value['error']}", flush=True)
        records.append({"workload": workload, "server": server.name, "round": rnd, **value})
        _settle(server)

    for rnd in range(sizes["rounds"]):
        print(f"bench: round {rnd + 1} of {sizes['rounds']}", flush=True)
        order = servers[rnd % len(servers) :] + servers[: rnd % len(servers)]
        for s in order:
            if "w1" in chosen and s.raw:
                measure("w1-raw", s, w1, sizes, as_multipart=False)
        for s in order:
            if "w1mp" in chosen and (s.multipart or not s.raw):
                measure("w1-multipart", s, w1, sizes, as_multipart=True)
        for s in order:
            if "w2" in chosen:
                measure("w2", s, w2, sizes)
        for s in order:
            if "w3" in chosen:
                measure("w3", s, w3, sizes)
        for chunk in sizes["sweep_chunks"] if "sweep" in chosen else []:
            for s in order:
                measure(f"sweep-{chunk >> 10}K", s, sweep, sizes, chunk)
        for size in sizes["w4"] if "w4" in chosen else []:
            for s in order:
                if s.protocol().completes:
                    measure(f"w4-{size >> 20}M", s, w4, size)
        for s in order:
            if "w5" in chosen:
                measure("w5", s, w5, sizes)
    return records
