"""The slow-client workload (issue 8): a crowd of connections trickling bodies at 1 byte/s.

For each server, in this order:
1. the big upload (8 MiB chunks) alone, while a prober times status reads: the unloaded baseline;
2. the crowd opens its connections, each sends a chunk request's head and then one byte of its
   body per second, for ever (the declared length is far more than it will send);
3. the server's memory is read (all its processes): the increase per crowd connection;
4. the same big upload again, with the same prober, while the crowd trickles.

The crowd and the prober run in processes of their own, so that the GIL of the process that
uploads does not inflate the latencies they measure. Everything is bounded: the crowd's size, a
deadline on every phase, a timeout on every socket; loopback only.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import resource
import socket
import statistics
import time
from urllib.parse import urlsplit

from .client import Connection, Tus, check, upload
from .servers import Server, tree

CROWD_BODY = 64 << 20  # declared body length: never reached at 1 byte/s, below nginx's 128m cap
TIMEOUT = 10.0  # seconds one status read may take before it counts as a timeout


def raise_open_file_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def rss_kib(server: Server) -> int:
    """RSS of all the server's processes (with an nginx front, the app server's too)."""
    pids = tree(server.proc.pid)
    backend = getattr(server, "backend", None)
    if backend is not None:
        pids += tree(backend.proc.pid)
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def _heads(url: str, dialect: str, n: int, deadline: float) -> list[bytes]:
    """The head of each crowd connection's request (tus needs each upload created first)."""
    port = urlsplit(url).port
    if dialect == "chunky":
        head = (
            f"PUT /upload/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Range: bytes 0-{CROWD_BODY - 1}/{CROWD_BODY}\r\n"
            "Content-Type: application/octet-stream\r\n"
            'Content-Disposition: attachment; filename="slow.bin"\r\n'
            f"Content-Length: {CROWD_BODY}\r\n\r\n"
        ).encode()
        return [head] * n
    conn, tus, heads = Connection(url, timeout=TIMEOUT), Tus(url), []
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        path = tus.start(conn, CROWD_BODY, "slow.bin")["path"]
        heads.append(
            (
                f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTus-Resumable: 1.0.0\r\n"
                "Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {CROWD_BODY}\r\n\r\n"
            ).encode()
        )
    conn.close()
    return heads


def _crowd(url: str, dialect: str, n: int, seconds: float, ready, stop, out) -> None:
    """Open ``n`` connections, then send one body byte on each every second until ``stop``."""
    raise_open_file_limit(n + 256)
    deadline = time.monotonic() + seconds
    socks, failed = [], 0
    for head in _heads(url, dialect, n, deadline):
        if stop.is_set() or time.monotonic() > deadline:
            break  # the bench gave up waiting (a full listen queue: each connect times out)
        try:
            s = socket.create_connection(("127.0.0.1", urlsplit(url).port), timeout=5)
            s.sendall(head + b"x")
            s.setblocking(False)
            socks.append(s)
        except OSError:
            failed += 1
    ready.set()
    sends = lost = 0
    while not stop.wait(1.0) and time.monotonic() < deadline:
        for s in socks:
            try:
                s.send(b"x")
                sends += 1
            except BlockingIOError:
                pass  # the server is not reading: that is its business
            except OSError:
                lost += 1
    waiting = 0  # connections the server still reads from (it neither answered nor closed them)
    for s in socks:
        try:
            s.recv(1)
        except BlockingIOError:
            waiting += 1
        except OSError:
            pass
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # a reset, as clients that vanish
    out.put(
        {"opened": len(socks), "failed": failed, "sends": sends, "lost": lost, "waiting": waiting}
    )


def _report(out, proc, what: str, timeout: float = TIMEOUT + 60) -> dict:
    """A helper process's result; a RuntimeError that says so when none comes."""
    try:
        result: dict = out.get(timeout=timeout)
    except queue.Empty:
        proc.kill()
        proc.join()
        raise RuntimeError(
            f"{what} reported nothing within {timeout:.0f} s of being told to stop"
        ) from None
    proc.join()
    return result


def status_target(server: Server) -> tuple[str, str, dict]:
    """A small upload to read the status of: (method, path, headers)."""
    conn = Connection(server.url, timeout=TIMEOUT)
    protocol = server.protocol()
    if isinstance(protocol, Tus):
        path = protocol.start(conn, 2, "status.bin")["path"]
        conn.close()
        return "HEAD", path, dict(Tus.HEADERS)
    state: dict = {}
    protocol.chunk(conn, state, b"x", 0, 2, "status.bin")
    conn.close()
    return "GET", f"/upload/{state['upload_id']}/", {}


def _prober(url: str, target: tuple, interval: float, stop, out) -> None:
    """Read the status on a new connection every ``interval`` seconds; latencies in ms."""
    method, path, headers = target
    ms, timeouts = [], 0
    while not stop.is_set():
        conn = Connection(url, timeout=TIMEOUT)
        t = time.perf_counter()
        try:
            check(conn.request(method, path, headers), 200, 204)
            ms.append((time.perf_counter() - t) * 1000)
        except Exception:  # a timeout, a reset or an error status
            timeouts += 1
            ms.append(TIMEOUT * 1000)
        finally:
            conn.close()
        stop.wait(interval)
    out.put({"ms": ms, "timeouts": timeouts})


def _timed_upload(
    server: Server, source: str, size: int, chunk_timeout: float, target: tuple
) -> dict:
    ctx = mp.get_context("fork")
    out, stop = ctx.Queue(), ctx.Event()
    probe = ctx.Process(target=_prober, args=(server.url, target, 0.05, stop, out))
    probe.start()
    record: dict = {}
    try:
        conn = Connection(server.url, timeout=chunk_timeout)
        result = upload(server.protocol(), source, size, 8 << 20, conn=conn)
        conn.close()
        record["mb_s"] = result.mb_s
        _drop(server, result.key)
    except (OSError, ValueError) as e:
        record["upload_error"] = f"{type(e).__name__}: {e}"[:200]
    finally:
        stop.set()
        probes = _report(out, probe, "the status prober")
    ms = sorted(probes["ms"])
    if ms:
        record["status_p50_ms"] = statistics.median(ms)
        record["status_p99_ms"] = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    record["status_reads"], record["status_timeouts"] = len(ms), probes["timeouts"]
    return record


def slow(server: Server, source: str, sizes: dict) -> dict:
    ctx = mp.get_context("fork")
    size, n = sizes["slow_upload"], sizes["slow_conns"]
    chunk_timeout = sizes["slow_chunk_timeout"]
    target = status_target(server)
    unloaded = _timed_upload(server, source, size, chunk_timeout, target)
    before = rss_kib(server)
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    crowd = ctx.Process(
        target=_crowd,
        args=(server.url, _dialect(server), n, sizes["slow_seconds"], ready, stop, out),
    )
    crowd.start()
    record: dict = {}
    try:
        if not ready.wait(sizes["slow_seconds"]):
            raise RuntimeError("the crowd did not open its connections in time")
        time.sleep(sizes["slow_settle"])  # a few bytes on each: every request is in the server
        after = rss_kib(server)
        loaded = _timed_upload(server, source, size, chunk_timeout, target)
    finally:
        stop.set()
        crowd_stats = _report(out, crowd, "the crowd")
    record.update({f"unloaded_{k}": v for k, v in unloaded.items()})
    record.update(loaded)
    record.update(crowd_stats)
    record["kib_per_conn"] = (after - before) / max(crowd_stats["opened"], 1)
    if "mb_s" in loaded and "mb_s" in unloaded:
        record["upload_ratio"] = loaded["mb_s"] / unloaded["mb_s"]
    return record


def _drop(server: Server, key: str) -> None:
    """Delete one upload's files (the disk is not the subject here), leaving the others."""
    for directory in server.data_dirs:
        for path in directory.rglob(f"{key}*") if key and directory.exists() else ():
            path.unlink(missing_ok=True)


def _dialect(server: Server) -> str:
    return "tus" if isinstance(server.protocol(), Tus) else "chunky"


def table(records: list[dict], labels: dict[str, str], sizes: dict) -> str:
    lines = [
        f"Slow clients: {sizes['slow_conns']} connections trickling a request body at 1 byte/s; "
        f"meanwhile status reads on new connections every 50 ms (p50/p99 ms; a read over "
        f"{TIMEOUT:.0f} s counts as {TIMEOUT:.0f} s) and a {sizes['slow_upload'] >> 20} MiB upload "
        "in 8 MiB chunks (MB/s, and its ratio to the same upload without the crowd, measured "
        "just before). Memory: the server's RSS (all its processes) increase per open slow "
        "connection.",
        "",
        "| server | status p50 / p99 alone | status p50 / p99 with the crowd | reads failed "
        "| upload alone | upload with the crowd | ratio | KiB per slow connection "
        "| connections open / still waiting at the end |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:
            lines.append(f"| {labels[r['server']]} | error: {r['error']} |" + " |" * 7)
            continue

        def f(key: str, digits: int = 1, r: dict = r) -> str:
            value = r.get(key)
            return "-" if value is None else f"{value:,.{digits}f}"

        upload = f("mb_s", 0) if "mb_s" in r else "starved"
        lines.append(
            f"| {labels[r['server']]} | {f('unloaded_status_p50_ms')} / {f('unloaded_status_p99_ms')} "
            f"| {f('status_p50_ms')} / {f('status_p99_ms')} "
            f"| {r.get('status_timeouts', 0)} of {r.get('status_reads', 0)} "
            f"| {f('unloaded_mb_s', 0)} | {upload} | {f('upload_ratio', 2)} "
            f"| {f('kib_per_conn', 1)} | {r.get('opened', 0)} / {r.get('waiting', 0)} |"
        )
    return "\n".join(lines)


def run(servers: list[Server], source: str, sizes: dict) -> list[dict]:
    raise_open_file_limit(sizes["slow_conns"] + 1024)
    records = []
    for server in servers:
        if server.kind == "null":
            continue  # the null servers read one connection at a time: not a candidate
        t = time.monotonic()
        try:
            record = slow(server, source, sizes)
        except Exception as e:  # reported in the table; the next server still runs
            record = {"error": f"{type(e).__name__}: {e}"[:300]}
        record["server"] = server.name
        record["seconds"] = time.monotonic() - t
        print(f"  slow {server.name:<24} {_summary(record)}", flush=True)
        records.append(record)
        server.wipe()
        os.sync()
    return records


def _summary(r: dict) -> str:
    if "error" in r:
        return "FAILED " + r["error"]
    return (
        f"status p99 {r.get('status_p99_ms', 0):.0f} ms ({r.get('status_timeouts', 0)} timeouts), "
        f"upload {r.get('mb_s', 0):.0f} of {r.get('unloaded_mb_s', 0):.0f} MB/s, "
        f"{r['kib_per_conn']:.1f} KiB/conn, {r.get('opened', 0)} open, "
        f"{r.get('waiting', 0)} still waiting at the end"
    )
