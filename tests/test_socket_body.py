"""A raw body read straight from gunicorn's socket (protocols/socket_body.py).

The unit tests drive gunicorn's own reader classes over a socket pair, with bytes of the body (and
of a pipelined next request) already in gunicorn's buffer, as after it parsed the headers. Every
test checks what gunicorn itself would read next, since a wrong count there would hand the next
request a piece of this one's body. The live test sends pipelined requests to the bundled site
under gunicorn with the production configuration.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import threading
import time

import pytest
import requests
from django.core.handlers.wsgi import WSGIRequest
from gunicorn.http.body import Body, EOFReader, LengthReader
from gunicorn.http.unreader import IterUnreader, SocketUnreader

from chunky_redis.protocols.socket_body import block_reader
from tests.support.processes import SiteProcess, live_env, require_real_redis

NEXT = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


class Wire:
    """gunicorn's reader of a request whose body is ``body``, followed by ``NEXT`` on the wire.

    ``buffered`` bytes of the stream (body first, then NEXT) are already in gunicorn's buffer, as
    read with the headers; the rest arrives on the socket, sent by a thread.
    """

    def __init__(self, body: bytes, buffered: int, *, close_after: int | None = None):
        self.body_bytes = body
        stream = body + NEXT
        self.ours, self.theirs = socket.socketpair()
        self.ours.settimeout(5)
        self.unreader = SocketUnreader(self.ours)
        self.unreader.unread(stream[:buffered])
        self.reader = LengthReader(self.unreader, len(body))
        self.body = Body(self.reader)
        rest = stream[buffered:] if close_after is None else stream[buffered:close_after]
        self.sender = threading.Thread(target=self._send, args=(rest, close_after is not None))
        self.sender.start()

    def _send(self, data: bytes, close: bool) -> None:
        self.theirs.sendall(data)
        if close:
            self.theirs.shutdown(socket.SHUT_WR)

    def request(self) -> WSGIRequest:
        return WSGIRequest(
            {
                "REQUEST_METHOD": "PUT",
                "PATH_INFO": "/upload/",
                "CONTENT_TYPE": "application/octet-stream",
                "CONTENT_LENGTH": str(len(self.body_bytes)),
                "wsgi.input": self.body,
                "SERVER_NAME": "testserver",
                "SERVER_PORT": "80",
                "wsgi.url_scheme": "http",
            }
        )

    def what_gunicorn_reads_next(self) -> bytes:
        """The rest of the body as gunicorn discards it after a response, then the next bytes."""
        self.sender.join(5)
        rest = self.body.read()
        following = b""
        while len(following) < len(NEXT):
            data = self.unreader.read()
            if not data:
                break
            following += data
        return rest + b"|" + following

    def close(self) -> None:
        self.sender.join(5)
        self.ours.close()
        self.theirs.close()


@pytest.fixture
def wires():
    made: list[Wire] = []

    def make(body: bytes, buffered: int, **kwargs) -> Wire:
        made.append(Wire(body, buffered, **kwargs))
        return made[-1]

    yield make
    for wire in made:
        wire.close()


def read_all(read, block: int) -> list[bytes]:
    blocks = []
    while data := read(block):
        blocks.append(data)
    return blocks


@pytest.mark.parametrize(
    "buffered",
    [0, 100, 4096, 5000, 5000 + 10, 5000 + len(NEXT)],
    ids=["nothing", "part-of-a-block", "blocks-and-a-part", "the-body", "and-part-of-next", "all"],
)
def test_the_body_comes_whole_and_the_next_request_stays_where_it_begins(wires, buffered):
    body = os.urandom(5000)
    wire = wires(body, buffered)
    read = block_reader(wire.request())
    assert read.__self__.__class__.__name__ == "_GunicornBody"  # the direct path, not request.read
    blocks = read_all(read, 1024)
    assert b"".join(blocks) == body
    assert [len(b) for b in blocks] == [1024, 1024, 1024, 1024, 904]
    assert wire.reader.length == 0
    assert wire.what_gunicorn_reads_next() == b"|" + NEXT


@pytest.mark.parametrize("buffered", [0, 1500, 5000 + len(NEXT)])
def test_a_request_that_stops_half_way_leaves_gunicorn_the_rest_of_its_body(wires, buffered):
    body = os.urandom(5000)
    wire = wires(body, buffered)
    read = block_reader(wire.request())
    first = read(1024) + read(1024)
    assert first == body[:2048]
    assert wire.what_gunicorn_reads_next() == body[2048:] + b"|" + NEXT


def test_a_block_never_reads_past_the_body(wires):
    body = os.urandom(3000)
    wire = wires(body, 0)
    read = block_reader(wire.request())
    assert read(1 << 20) == body  # asked for more than the body: gets the body only
    assert read(1 << 20) == b""
    assert wire.what_gunicorn_reads_next() == b"|" + NEXT


def test_a_body_cut_short_returns_what_came_then_nothing(wires):
    body = os.urandom(5000)
    wire = wires(body, 100, close_after=3000)  # the client goes away 3,000 bytes in
    read = block_reader(wire.request())
    blocks = read_all(read, 4096)
    assert b"".join(blocks) == body[:3000]


def test_a_socket_error_marks_the_body_failed_so_the_connection_is_not_reused(wires):
    wire = wires(os.urandom(5000), 100, close_after=1000)
    read = block_reader(wire.request())
    direct = read.__self__

    def reset(*args):
        raise ConnectionResetError("reset by peer")

    direct.recv = reset
    assert not wire.body.failed
    with pytest.raises(ConnectionResetError):
        read(4096)
    assert wire.body.failed


def test_other_bodies_are_read_through_request_read(wires):
    body = os.urandom(2000)
    wire = wires(body, 0)

    started = wire.request()
    assert started.read(1024) == body[:1024]  # Django has begun reading (and gunicorn's
    assert wire.body.buf.tell() == 0  # buffers hold nothing more): left to Django
    assert block_reader(started) == started.read

    whole = wires(body, 0)
    request = whole.request()
    assert request.body == body  # Django holds the body: the socket has no more of it
    read = block_reader(request)
    assert read == request.read
    assert b"".join(read_all(read, 1024)) == body

    to_the_end = wires(body, 0)
    eof = to_the_end.request()
    eof.META["wsgi.input"].reader = EOFReader(to_the_end.unreader)
    assert block_reader(eof) == eof.read

    plain = WSGIRequest({**wire.request().META, "wsgi.input": io.BytesIO(body)})
    assert block_reader(plain) == plain.read

    class Counting(Body):  # a server's own body class may do more with the bytes
        pass

    counted = wires(body, 0)
    subclass = WSGIRequest({**counted.request().META, "wsgi.input": Counting(counted.reader)})
    assert block_reader(subclass) == subclass.read

    not_a_socket = WSGIRequest(
        {**wire.request().META, "wsgi.input": Body(LengthReader(IterUnreader([body]), len(body)))}
    )
    assert block_reader(not_a_socket) == not_a_socket.read

    read_ahead = wires(body, 0)
    buffered = read_ahead.request()
    read_ahead.body.buf.write(b"x")  # the body's own buffer holds bytes: not ours to skip
    assert block_reader(buffered) == buffered.read


@pytest.mark.live
def test_pipelined_requests_on_one_connection_to_the_deployed_site(tmp_path):
    """A chunk, a refused chunk whose body is left unread, and a status read, sent in one go on
    one keep-alive connection: each answer is the right one, and the upload holds the chunk."""
    require_real_redis()
    site = SiteProcess(live_env(tmp_path), workers=1).start()
    try:
        data = os.urandom(3 << 20)
        first = data[: 2 << 20]
        with socket.create_connection(("127.0.0.1", site.port), timeout=30) as sock:
            sock.sendall(put("/upload/", first, f"bytes 0-{len(first) - 1}/{len(data)}", site))
            upload_id = json.loads(answers(sock, 1)[0][1])["upload_id"]
            second = data[len(first) :]
            too_long = second + os.urandom(4096)  # more than its Content-Range announces
            path = f"/upload/{upload_id}/"
            sock.sendall(
                put(path, too_long, f"bytes {len(first)}-{len(data) - 1}/{len(data)}", site)
                + put(path, second, f"bytes {len(first)}-{len(data) - 1}/{len(data)}", site)
                + f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            )
            (refused, chunk, status) = answers(sock, 3)
        assert refused[0] == 400, refused
        assert json.loads(refused[1])["code"] == "length_mismatch"
        assert chunk[0] == 200, chunk
        assert status[0] == 200, status
        assert json.loads(status[1])["offset"] == len(data)
        stored = os.path.join(site.env["CHUNKY_UPLOAD_DIR"], upload_id + ".part")
        with open(stored, "rb") as f:
            assert hashlib.md5(f.read()).hexdigest() == hashlib.md5(data).hexdigest()
    finally:
        site.stop()


def put(path: str, body: bytes, content_range: str, site: SiteProcess) -> bytes:
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{site.port}\r\n"
        f"Content-Range: {content_range}\r\nContent-Type: application/octet-stream\r\n"
        f'Content-Disposition: attachment; filename="pipelined.bin"\r\n'
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def answers(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """``count`` HTTP responses read off ``sock``: (status, body) each."""
    buf = b""
    found = []
    while len(found) < count:
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            assert data, f"the connection closed after {len(found)} answers"
            buf += data
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in lines
            if line.lower().startswith(b"content-length:")
        )
        while len(buf) < length:
            data = sock.recv(65536)
            assert data, "the connection closed inside an answer"
            buf += data
        found.append((int(lines[0].split()[1]), buf[:length]))
        buf = buf[length:]
    return found


@pytest.mark.live
def test_trickling_bodies_hold_only_what_has_arrived(tmp_path):
    """A client that trickles a large body costs the worker the bytes it sent, not a block: 100
    connections each declaring 8 MiB and sending about 1 KB add well under 256 KiB each to the
    worker's resident memory (with a block allocated up front it would be 1 MiB each)."""
    require_real_redis()
    site = SiteProcess(live_env(tmp_path), workers=1).start()
    conns: list[socket.socket] = []
    try:
        total = 16 + (8 << 20)
        ids = []
        for _ in range(100):
            response = requests.put(
                site.url + "/upload/",
                data=b"x" * 16,
                headers={"Content-Range": f"bytes 0-15/{total}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            ids.append(response.json()["upload_id"])
        before = resident_kib(site.proc.pid)
        for upload_id in ids:
            conn = socket.create_connection(("127.0.0.1", site.port), timeout=30)
            conn.sendall(
                (
                    f"PUT /upload/{upload_id}/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Content-Range: bytes 16-{total - 1}/{total}\r\n"
                    f"Content-Type: application/octet-stream\r\nContent-Length: {total - 16}\r\n\r\n"
                ).encode()
                + os.urandom(1000)
            )
            conns.append(conn)
        for _ in range(3):
            time.sleep(1)
            for conn in conns:
                conn.sendall(b"y")
        assert requests.get(site.url + "/healthz", timeout=30).status_code == 200
        grown = resident_kib(site.proc.pid) - before
        assert grown / len(conns) < 256, f"{grown / len(conns):.0f} KiB per trickling connection"
    finally:
        for conn in conns:
            conn.close()
        site.stop()


def resident_kib(master: int) -> int:
    """VmRSS of gunicorn's master and its workers, in KiB."""
    with open(f"/proc/{master}/task/{master}/children") as f:
        pids = [master, *(int(pid) for pid in f.read().split())]
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return total
