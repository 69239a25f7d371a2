"""The fault proxy itself does what the fault tests rely on."""

from __future__ import annotations

import socket
import socketserver
import threading
import time

import pytest

from tests.support.proxy import FaultProxy

pytestmark = pytest.mark.fault


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def proxy():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with FaultProxy(server.server_address) as proxy:
        yield proxy
    server.shutdown()
    server.server_close()


def connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection((proxy.host, proxy.port), timeout=5)
    return sock


def echo(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        piece = sock.recv(65536)
        if not piece:
            break
        got += piece
    return got


def test_passes_bytes_through(proxy):
    with connect(proxy) as sock:
        data = bytes(range(256)) * 1000
        assert echo(sock, data) == data


def test_delay_is_latency(proxy):
    proxy.set_delay(0.2)
    with connect(proxy) as sock:
        started = time.monotonic()
        assert echo(sock, b"ping") == b"ping"
        assert 0.4 <= time.monotonic() - started < 2.0  # both directions


def test_rate_limits_throughput(proxy):
    proxy.set_rate(100_000)
    with connect(proxy) as sock:
        started = time.monotonic()
        assert echo(sock, b"x" * 50_000) == b"x" * 50_000
        assert time.monotonic() - started >= 0.4


def test_blackhole_stalls_without_losing_bytes(proxy):
    with connect(proxy) as sock:
        assert echo(sock, b"a") == b"a"
        proxy.blackhole()
        sock.sendall(b"held")
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(10)
        proxy.heal()
        sock.settimeout(5)
        assert sock.recv(10) == b"held"


def test_reset_all_resets_open_connections(proxy):
    with connect(proxy) as sock:
        assert echo(sock, b"a") == b"a"
        assert proxy.reset_all() == 1
        with pytest.raises(ConnectionResetError):
            for _ in range(10):
                sock.sendall(b"more")
                if not sock.recv(10):
                    raise AssertionError("closed with FIN, not reset")
                time.sleep(0.05)


def test_reset_after_cuts_the_stream(proxy):
    proxy.reset_after(1000)
    with connect(proxy) as sock:
        with pytest.raises(ConnectionResetError):
            got = echo(sock, b"y" * 5000)
            assert len(got) <= 1000
            sock.sendall(b"z")
            sock.recv(10)
