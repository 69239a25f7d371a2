"""A TCP proxy for fault tests: put it between a client and the server, or between the
server and Redis, and make the network misbehave on command.

    with FaultProxy(("127.0.0.1", redis_port)) as proxy:
        env["REDIS_URL"] = f"redis://127.0.0.1:{proxy.port}/0"
        proxy.set_delay(0.2)        # every piece of data arrives 200 ms late, both ways
        proxy.set_rate(64 * 1024)   # at most 64 KiB/s per connection and direction
        proxy.blackhole()           # nothing gets through; senders stall (TCP keeps the bytes)
        proxy.reset_all()           # RST every open connection, both sides
        proxy.reset_after(100_000)  # RST a connection once it has carried this many bytes upstream
        proxy.heal()                # back to a clean pass-through

A black hole stalls rather than discards: on a real network TCP retransmits
dropped packets, so bytes are delayed or the connection dies, never silently
skipped. Combine ``blackhole()`` with ``reset_all()`` for the "died" half.

Threads, not asyncio: the tests that use it are synchronous, and each
connection's two directions are a reader thread and a writer thread joined by
a queue (so a delay is latency, not a throughput limit).
"""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass

_PIECE = 64 * 1024
_CLOSE = object()  # queued after a reader's last piece


def _abort(sock: socket.socket) -> None:
    """Close with RST instead of FIN, and wake any thread blocked on the socket."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RD)  # wakes a blocked recv() without sending anything
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


@dataclass
class ProxyStats:
    connections: int = 0
    resets: int = 0
    bytes_up: int = 0  # client -> target
    bytes_down: int = 0  # target -> client


class _Link:
    """One proxied connection: client socket, target socket, four threads."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, target: socket.socket):
        self.proxy = proxy
        self.client = client
        self.target = target
        self.up_bytes = 0
        self.closed = False
        self.writers_done = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        for src, dst, upstream in (
            (self.client, self.target, True),
            (self.target, self.client, False),
        ):
            pieces: queue.Queue = queue.Queue()
            threading.Thread(target=self._read, args=(src, pieces, upstream), daemon=True).start()
            threading.Thread(target=self._write, args=(dst, pieces, upstream), daemon=True).start()

    def _read(self, src: socket.socket, pieces: queue.Queue, upstream: bool) -> None:
        try:
            while not self.closed:
                self.proxy._wait_open()
                rate = self.proxy.rate
                size = _PIECE if not rate else max(1, min(_PIECE, rate // 20))
                data = src.recv(size)
                if not data:
                    break
                pieces.put((time.monotonic() + self.proxy.delay, data))
        except OSError:
            pass
        pieces.put((0.0, _CLOSE))

    def _write(self, dst: socket.socket, pieces: queue.Queue, upstream: bool) -> None:
        try:
            while True:
                due, data = pieces.get()
                if data is _CLOSE:
                    break
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                self.proxy._wait_open()
                if self.closed:
                    return
                limit = self.proxy.reset_after_bytes
                if upstream and limit is not None and self.up_bytes + len(data) >= limit:
                    # Deliver part of it, then cut the connection in the middle of the stream.
                    dst.sendall(data[: max(0, limit - self.up_bytes)])
                    self.reset()
                    return
                dst.sendall(data)
                self._count(len(data), upstream)
                if self.proxy.rate:
                    time.sleep(len(data) / self.proxy.rate)
            try:
                dst.shutdown(socket.SHUT_WR)  # pass the FIN on
            except OSError:
                pass
            self._writer_done()
        except OSError:
            self.reset()

    def _writer_done(self) -> None:
        with self._lock:
            self.writers_done += 1
            if self.writers_done < 2 or self.closed:
                return
            self.closed = True
        for sock in (self.client, self.target):
            sock.close()
        with self.proxy._lock:
            self.proxy._links.discard(self)

    def _count(self, n: int, upstream: bool) -> None:
        with self.proxy._lock:
            if upstream:
                self.up_bytes += n
                self.proxy.stats.bytes_up += n
            else:
                self.proxy.stats.bytes_down += n

    def reset(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        _abort(self.client)
        _abort(self.target)
        with self.proxy._lock:
            self.proxy.stats.resets += 1
            self.proxy._links.discard(self)


class FaultProxy:
    """Forwards every connection made to ``port`` to ``target``, misbehaving on command."""

    def __init__(self, target: tuple[str, int], *, host: str = "127.0.0.1", port: int = 0):
        self.target = target
        self.delay = 0.0
        self.rate: int | None = None
        self.reset_after_bytes: int | None = None
        self.refuse = False
        self.stats = ProxyStats()
        self._open = threading.Event()
        self._open.set()
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._listener = socket.create_server((host, port), backlog=128)
        self.host, self.port = self._listener.getsockname()[:2]
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True, name="fault-proxy")

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self._open.set()
        _abort(self._listener)
        self.reset_all()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- commands --------------------------------------------------------------
    def set_delay(self, seconds: float) -> None:
        self.delay = seconds

    def set_rate(self, bytes_per_second: int | None) -> None:
        self.rate = bytes_per_second

    def blackhole(self) -> None:
        self._open.clear()

    def reset_after(self, n_bytes: int | None) -> None:
        """Reset each connection once it has carried ``n_bytes`` towards the target."""
        self.reset_after_bytes = n_bytes

    def refuse_new(self, on: bool = True) -> None:
        """Reset each new connection as soon as it is accepted."""
        self.refuse = on

    def reset_all(self) -> int:
        with self._lock:
            links = list(self._links)
        for link in links:
            link.reset()
        return len(links)

    def heal(self) -> None:
        self.delay, self.rate, self.reset_after_bytes, self.refuse = 0.0, None, None, False
        self._open.set()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._links)

    # -- plumbing --------------------------------------------------------------
    def _wait_open(self) -> None:
        self._open.wait()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refuse:
                _abort(client)
                with self._lock:
                    self.stats.resets += 1
                continue
            try:
                target = socket.create_connection(self.target, timeout=5)
                target.settimeout(None)
            except OSError:
                _abort(client)  # the target is down: the client sees a reset, as it would
                continue
            for sock in (client, target):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, target)
            with self._lock:
                self._links.add(link)
                self.stats.connections += 1
            link.start()
