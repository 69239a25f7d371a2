"""The one benchmark client: keep-alive HTTP/1.1 over a plain socket, and one adapter per protocol.

Every server is driven by the same loop (``upload``): read the next chunk of
the file from disk, feed it to the file's md5, send it, wait for the answer.
Only the request shapes differ (``Protocol`` subclasses).
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


class HTTPError(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class Connection:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, base_url: str, *, timeout: float | None = None):
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout  # per socket operation; None waits for ever
        self.sock: socket.socket | None = None
        self.rfile = None

    def _connect(self) -> None:
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb", buffering=65536)

    def close(self) -> None:
        if self.sock is not None:
            self.rfile.close()
            self.sock.close()
            self.sock = self.rfile = None

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body=()
    ) -> Response:
        """``body`` is a sequence of bytes-like parts, sent without being joined."""
        if isinstance(body, (bytes, bytearray, memoryview)):
            body = (body,)
        length = sum(memoryview(part).nbytes for part in body)
        lines = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {length}",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        for attempt in (0, 1):
            if self.sock is None:
                self._connect()
            try:
                self.sock.sendall(head)
                for part in body:
                    self.sock.sendall(part)
                response = self._read_response(method)
                break
            except (ConnectionError, HTTPError):
                self.close()  # a keep-alive connection the server had closed: one retry on a new one
                if attempt:
                    raise
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def _read_response(self, method: str) -> Response:
        status_line = self.rfile.readline(65536)
        if not status_line:
            raise HTTPError("the server closed the connection")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while (line := self.rfile.readline(65536)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return Response(status, headers, b"")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline(65536).split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(65536)
            return Response(status, headers, b"".join(parts))
        if "content-length" in headers:
            return Response(status, headers, self.rfile.read(int(headers["content-length"])))
        data = self.rfile.read()
        self.close()
        return Response(status, headers, data)


def check(response: Response, *expected: int) -> Response:
    if response.status not in (expected or (200,)):
        raise HTTPError(f"HTTP {response.status}: {response.body[:300]!r}")
    return response


BOUNDARY = "----chunkybenchboundary7MA4YWxkTrZu0gW"


def multipart(fields: dict[str, str], file_field: str, filename: str, data) -> tuple[list, str]:
    """The parts of a multipart/form-data body, the file's bytes not copied."""
    head = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    )
    head += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return [
        head.encode(),
        data,
        f"\r\n--{BOUNDARY}--\r\n".encode(),
    ], f"multipart/form-data; boundary={BOUNDARY}"


# -- protocols ------------------------------------------------------------------------------


class Protocol:
    """How one kind of server takes a chunk, a completion and a status read."""

    name = "?"
    completes = True

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def start(self, conn: Connection, total: int, filename: str) -> dict:
        return {}

    def chunk(
        self, conn: Connection, state: dict, data, start: int, total: int, filename: str
    ) -> None:
        raise NotImplementedError

    def complete(self, conn: Connection, state: dict, md5: str) -> None:
        """Returns once the server says the upload is complete."""

    def file_key(self, state: dict) -> str:
        return state.get("upload_id", "")


class Chunky(Protocol):
    """chunky_redis (and the null servers, which answer the same way)."""

    name = "chunky"

    def __init__(self, base_url: str, *, as_multipart: bool = False, poll_s: float = 0.002):
        super().__init__(base_url)
        self.as_multipart = as_multipart
        self.poll_s = poll_s

    def chunk(self, conn, state, data, start, total, filename):
        end = start + memoryview(data).nbytes - 1
        path = f"/upload/{state['upload_id']}/" if "upload_id" in state else "/upload/"
        headers = {"Content-Range": f"bytes {start}-{end}/{total}"}
        if self.as_multipart:
            body, headers["Content-Type"] = multipart({}, "file", filename, data)
        else:
            body = [data]
            headers["Content-Type"] = "application/octet-stream"
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        answer = check(conn.request("PUT", path, headers, body)).json()
        if answer["offset"] != end + 1:
            raise HTTPError(f"offset {answer['offset']} after a chunk ending at {end}")
        state["upload_id"] = answer["upload_id"]

    def complete(self, conn, state, md5):
        path = f"/upload/{state['upload_id']}/"
        body = json.dumps({"md5": md5}).encode()
        check(conn.request("POST", path, {"Content-Type": "application/json"}, body))
        while True:
            status = check(conn.request("GET", path)).json()["status"]
            if status == "complete":
                return
            if status not in ("processing", "uploading"):
                raise HTTPError(f"the upload ended as {status}")
            time.sleep(self.poll_s)


class ChunkedUpload(Protocol):
    """django-chunked-upload 2.0.0: multipart POSTs, upload_id as a form field, md5 re-read at completion."""

    name = "django-chunked-upload"

    def chunk(self, conn, state, data, start, total, filename):
        end = start + memoryview(data).nbytes - 1
        fields = {"upload_id": state["upload_id"]} if "upload_id" in state else {}
        body, content_type = multipart(fields, "file", filename, data)
        headers = {"Content-Type": content_type, "Content-Range": f"bytes {start}-{end}/{total}"}
        answer = check(conn.request("POST", "/api/chunked_upload/", headers, body)).json()
        state["upload_id"] = answer["upload_id"]

    def complete(self, conn, state, md5):
        body = f"upload_id={state['upload_id']}&md5={md5}".encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        check(conn.request("POST", "/api/chunked_upload_complete/", headers, body))


class Tus(Protocol):
    """tus 1.0 core + creation, as served by @tus/server. It has no checksum and no completion step."""

    name = "tus"
    completes = False
    HEADERS = {"Tus-Resumable": "1.0.0"}

    def start(self, conn, total, filename):
        headers = {**self.HEADERS, "Upload-Length": str(total), "Upload-Metadata": "filename Ymlu"}
        location = check(conn.request("POST", "/files/", headers), 201).headers["location"]
        return {"path": urlsplit(location).path}

    def chunk(self, conn, state, data, start, total, filename):
        headers = {
            **self.HEADERS,
            "Upload-Offset": str(start),
            "Content-Type": "application/offset+octet-stream",
        }
        answer = check(conn.request("PATCH", state["path"], headers, [data]), 204)
        if int(answer.headers["upload-offset"]) != start + memoryview(data).nbytes:
            raise HTTPError("tus offset did not advance")

    def file_key(self, state):
        return state["path"].rstrip("/").rsplit("/", 1)[-1]


# -- the upload loop --------------------------------------------------------------------------


@dataclass
class Result:
    size: int
    seconds: float  # from the first read to the last chunk's answer
    chunk_ms: list[float] = field(default_factory=list)  # each chunk's request, send to answer
    completion_ms: float | None = None
    md5: str = ""
    key: str = ""

    @property
    def mb_s(self) -> float:
        return self.size / self.seconds / 1e6


def upload(
    protocol: Protocol,
    source: str,
    size: int,
    chunk_size: int,
    *,
    file_offset: int = 0,
    complete: bool = False,
    conn: Connection | None = None,
    filename: str = "bench.bin",
) -> Result:
    """Upload ``size`` bytes of ``source`` (from ``file_offset``) as a real client would."""
    own = conn is None
    conn = conn or Connection(protocol.base_url)
    buffer = bytearray(min(chunk_size, size))
    view = memoryview(buffer)
    md5 = hashlib.md5()
    chunk_ms = []
    try:
        with open(source, "rb", buffering=0) as f:
            t0 = time.perf_counter()
            state = protocol.start(conn, size, filename)
            f.seek(file_offset)
            sent = 0
            while sent < size:
                n = f.readinto(view[: min(chunk_size, size - sent)])
                data = view[:n]
                md5.update(data)
                t = time.perf_counter()
                protocol.chunk(conn, state, data, sent, size, filename)
                chunk_ms.append((time.perf_counter() - t) * 1000)
                sent += n
            seconds = time.perf_counter() - t0
        result = Result(size, seconds, chunk_ms, md5=md5.hexdigest(), key=protocol.file_key(state))
        if complete and protocol.completes:
            t = time.perf_counter()
            protocol.complete(conn, state, result.md5)
            result.completion_ms = (time.perf_counter() - t) * 1000
        return result
    finally:
        if own:
            conn.close()
