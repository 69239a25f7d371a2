"""The two reference servers: plain sockets, one thread per connection, no framework.

    python -m bench.nullserver discard PORT DIR   reads each body and drops it (the client's ceiling)
    python -m bench.nullserver work PORT DIR      md5-hashes each body and pwrite()s it at its offset
                                                  (the least work any correct server must do)

Both speak just enough of the chunky_redis protocol for the benchmark client:
PUT /upload/[<id>/] with Content-Range answers {"upload_id", "offset", "expires"};
POST /upload/<id>/ with {"md5": ...} completes; GET /upload/<id>/ reads the status.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import uuid

BLOCK = 1 << 20


class Upload:
    def __init__(self, path: str, total: int):
        self.path, self.total, self.offset = path, total, 0
        self.md5 = hashlib.md5()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        self.status = "uploading"

    def close(self) -> None:
        """Close the file once: an open descriptor keeps a deleted file's blocks allocated,
        which slowed every other writer (and fdatasync) on the file system."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def serve(mode: str, port: int, directory: str) -> None:
    uploads: dict[str, Upload] = {}
    listener = socket.create_server(("127.0.0.1", port), backlog=64)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn, mode, directory, uploads), daemon=True).start()


def handle(conn: socket.socket, mode: str, directory: str, uploads: dict[str, Upload]) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rfile = conn.makefile("rb", buffering=BLOCK)
    buf = bytearray(BLOCK)
    with conn, rfile:
        while True:
            line = rfile.readline(65536)
            if not line:
                return
            method, target, _ = line.decode("latin-1").split(" ", 2)
            headers = {}
            while (line := rfile.readline(65536)) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            parts = target.split("?")[0].strip("/").split("/")
            upload_id = parts[1] if len(parts) > 1 else None
            if method == "PUT":
                status, body = put(rfile, buf, length, mode, directory, uploads, upload_id, headers)
            else:
                data = rfile.read(length)
                status, body = other(method, data, uploads, upload_id)
            payload = json.dumps(body).encode()
            conn.sendall(
                b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (status, len(payload), payload)
            )


def put(rfile, buf, length, mode, directory, uploads, upload_id, headers):
    start, _, total = (
        headers.get("content-range", f"bytes 0-0/{length}")[6:].replace("/", "-").split("-")
    )
    start, total = int(start), int(total)
    if upload_id is None:
        upload_id = uuid.uuid4().hex
        if mode == "work":
            uploads[upload_id] = Upload(os.path.join(directory, upload_id + ".part"), total)
    upload = uploads.get(upload_id)
    if upload is not None and start != upload.offset:
        rfile.read(length)
        return 400, {"detail": "offset mismatch", "offset": upload.offset}
    view, remaining, position = memoryview(buf), length, start
    while remaining:
        n = rfile.readinto(view[: min(remaining, BLOCK)])
        if not n:
            raise ConnectionError("short body")
        if upload is not None:
            block = view[:n]
            upload.md5.update(block)
            written = 0
            while written < n:
                written += os.pwrite(upload.fd, block[written:], position + written)
            position += n
        remaining -= n
    offset = start + length
    if upload is not None:
        upload.offset = offset
        if offset >= upload.total:
            upload.close()  # the last byte: a file the benchmark deletes must not stay open
    return 200, {"upload_id": upload_id, "offset": offset, "expires": "2099-01-01T00:00:00Z"}


def other(method, data, uploads, upload_id):
    upload = uploads.get(upload_id or "")
    if method == "POST":
        md5 = json.loads(data or b"{}").get("md5", "")
        if upload is not None:
            if upload.offset != upload.total or upload.md5.hexdigest() != md5:
                return 400, {"detail": "incomplete or md5 mismatch"}
            upload.close()
            try:
                os.unlink(upload.path)  # the benchmark keeps no file
            except FileNotFoundError:
                pass  # wiped already
            upload.status = "complete"
        return 200, {"upload_id": upload_id, "status": "processing"}
    if method == "DELETE":
        if upload is not None and upload.status == "uploading":
            upload.close()
            try:
                os.unlink(upload.path)
            except FileNotFoundError:
                pass
        uploads.pop(upload_id or "", None)
        return 200, {}
    if upload_id == "healthz" or upload_id is None:
        return 200, {"status": "ok"}
    return 200, {"upload_id": upload_id, "status": upload.status if upload else "complete"}


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
