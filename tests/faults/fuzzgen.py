"""A seeded generator of requests for the live fuzz run, and a model of what the server
should hold afterwards.

About half the requests are ones a correct client sends (the next chunk, a status
read, a completion with the right md5), so uploads really move through their states;
the rest are mistakes and hostile shapes (wrong offsets, broken Content-Range,
malformed multipart and JSON, deep nesting, odd methods and paths, long non-ASCII
filenames). Every 200 is applied to the model; the end check compares the model
with Redis and the files.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from urllib.parse import quote

METHODS = ["PUT", "POST", "GET", "HEAD", "DELETE", "PATCH", "OPTIONS"]
BOUNDARY = "fuzzBoundary0123456789"
FILENAMES = [
    "a.bin",
    "report 2026.pdf",
    'qu"ote.txt',
    "../../etc/passwd",
    "page.html",
    "é" * 200,  # 400 bytes in UTF-8: more than a file name may have
    "名" * 90,
    "x" * 300,
    "",
]


@dataclass
class Upload:
    upload_id: str
    total: int
    data: bytearray = field(default_factory=bytearray)
    filename: str = ""
    state: str = "uploading"  # uploading | processing (completed with the right md5)
    known_bytes: bool = True  # False: created by a request whose bytes the model cannot tell

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    # What a 200 means for the model: ("new", total, file bytes, filename), ("chunk", id,
    # start, file bytes), ("complete", id, md5), ("whole", file bytes, md5, filename) or None.
    effect: tuple | None = None
    kind: str = ""


class Fuzzer:
    def __init__(self, seed: int):
        self.rnd = random.Random(seed)
        self.uploads: dict[str, Upload] = {}

    # -- building blocks -------------------------------------------------------
    def _bytes(self, n: int) -> bytes:
        return self.rnd.randbytes(n)

    def _filename(self) -> str:
        return self.rnd.choice(FILENAMES)

    def _disposition(self, name: str) -> dict[str, str]:
        if not name:
            return {}
        if all(32 <= ord(c) < 127 for c in name):
            return {"Content-Disposition": f'attachment; filename="{name.replace(chr(34), "")}"'}
        return {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"}

    def _multipart(self, parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
        out = b""
        for name, filename, data in parts:
            disposition = f'form-data; name="{name}"'
            if filename is not None:
                disposition += f'; filename="{filename}"'
            out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
            if filename is not None:
                out += b"Content-Type: application/octet-stream\r\n"
            out += b"\r\n" + data + b"\r\n"
        out += f"--{BOUNDARY}--\r\n".encode()
        return out, f"multipart/form-data; boundary={BOUNDARY}"

    def _body(self, data: bytes, filename: str) -> tuple[bytes, dict[str, str]]:
        """The chunk in one of the three accepted formats."""
        form = self.rnd.choice(["raw", "raw", "multipart", "json"])
        if form == "multipart":
            body, ctype = self._multipart([("file", filename or "blob", data)])
            return body, {"Content-Type": ctype}
        if form == "json":
            payload = {"file": list(data), "filename": filename}
            return json.dumps(payload).encode(), {"Content-Type": "application/json"}
        return data, {"Content-Type": "application/octet-stream", **self._disposition(filename)}

    def _range(self, start: int, end: int, total: int) -> str:
        return f"bytes {start}-{end}/{total}"

    def _known(self, state: str | None = None) -> Upload | None:
        pool = [
            u
            for u in self.uploads.values()
            if u.known_bytes and (state is None or u.state == state)
        ]
        return self.rnd.choice(pool) if pool else None

    # -- requests --------------------------------------------------------------
    def next(self) -> Request:
        r = self.rnd.random()
        if r < 0.12 or not self.uploads:
            return self.new_upload()
        if r < 0.40:
            return self.next_chunk()
        if r < 0.48:
            return self.completion()
        if r < 0.55:
            return self.status()
        if r < 0.62:
            return self.wrong_chunk()
        if r < 0.68:
            return self.bad_multipart()
        if r < 0.73:
            return self.bad_json()
        if r < 0.78:
            return self.bad_completion()
        if r < 0.81:
            return self.whole_file()
        return self.anything()

    def new_upload(self) -> Request:
        total = self.rnd.randint(1, 4096)
        n = min(total, self.rnd.randint(1, 2048))
        data, name = self._bytes(n), self._filename()
        body, headers = self._body(data, name)
        headers["Content-Range"] = self._range(0, n - 1, total)
        return Request("PUT", "/upload/", headers, body, ("new", total, data, name), "new")

    def next_chunk(self) -> Request:
        upload = self._known("uploading")
        if upload is None or len(upload.data) >= upload.total:
            return self.completion()
        start = len(upload.data)
        n = min(upload.total - start, self.rnd.randint(1, 2048))
        data = self._bytes(n)
        body, headers = self._body(data, "")
        headers["Content-Range"] = self._range(start, start + n - 1, upload.total)
        effect = ("chunk", upload.upload_id, start, data)
        return Request("PUT", f"/upload/{upload.upload_id}/", headers, body, effect, "chunk")

    def completion(self) -> Request:
        done = [
            u for u in self.uploads.values() if u.state == "uploading" and len(u.data) == u.total
        ]
        upload = self.rnd.choice(done) if done else self._known()
        assert upload is not None
        if self.rnd.random() < 0.5:
            body, headers = (
                json.dumps({"md5": upload.md5}).encode(),
                {"Content-Type": "application/json"},
            )
        else:
            body = f"md5={upload.md5}".encode()
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        effect = ("complete", upload.upload_id, upload.md5)
        return Request("POST", f"/upload/{upload.upload_id}/", headers, body, effect, "complete")

    def status(self) -> Request:
        upload = self._known()
        method = self.rnd.choice(["GET", "GET", "HEAD"])
        upload_id = upload.upload_id if upload else "0" * 32
        return Request(method, f"/upload/{upload_id}/", {}, kind="status")

    def wrong_chunk(self) -> Request:
        """A chunk that must be refused and change nothing."""
        upload = self._known()
        assert upload is not None
        start, total = len(upload.data), upload.total
        data = self._bytes(self.rnd.randint(1, 64))
        choice = self.rnd.randrange(8)
        headers = {"Content-Type": "application/octet-stream"}
        if choice == 0:  # wrong offset
            start = self.rnd.choice([start + 1, max(0, start - 1), 0, total])
            headers["Content-Range"] = self._range(start, start + len(data) - 1, total)
        elif choice == 1:  # the total changed
            headers["Content-Range"] = self._range(start, start + len(data) - 1, total + 1)
        elif choice == 2:  # the range says more than the body has
            headers["Content-Range"] = self._range(start, start + len(data), total)
        elif choice == 3:
            headers["Content-Range"] = self.rnd.choice(
                [
                    "bytes */100",
                    "bytes 5-1/10",
                    "items 0-1/2",
                    "bytes -1-3/4",
                    "bytes 0-0/0",
                    f"bytes 0-{2**70}/{2**71}",
                    "bytes\x00 0-1/2",
                    "bytes 0-1/2, 3-4/5",
                    "",
                    "🙂",
                ]
            )
        elif choice == 4:  # past the end
            headers["Content-Range"] = self._range(total, total + len(data) - 1, total)
        elif choice == 5:  # no body at all
            data = b""
            headers["Content-Range"] = self._range(start, start, total)
        elif choice == 6:  # Transfer-Encoding: chunked, which the protocol refuses
            headers["Transfer-Encoding"] = "chunked"
            data = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
        else:  # another upload's id, or one that does not exist
            return Request(
                "PUT",
                f"/upload/{self._bytes(16).hex()}/",
                {**headers, "Content-Range": self._range(0, len(data) - 1, 99)},
                data,
                kind="wrong",
            )
        # A NUL in a header is not HTTP (RFC 9110 5.5): the HTTP server answers it, not the app.
        kind = "not-http" if "\x00" in headers.get("Content-Range", "") else "wrong"
        return Request("PUT", f"/upload/{upload.upload_id}/", headers, data, kind=kind)

    def bad_multipart(self) -> Request:
        data = self._bytes(self.rnd.randint(1, 256))
        choice = self.rnd.randrange(5)
        if choice == 0:  # two file parts
            body, ctype = self._multipart([("file", "a", data), ("file", "b", data)])
        elif choice == 1:  # a file part followed by many fields
            fields = [(f"f{i}", None, b"v") for i in range(1500)]
            body, ctype = self._multipart([("file", "a", data), *fields])
        elif choice == 2:  # cut short
            body, ctype = self._multipart([("file", "a", data)])
            body = body[: self.rnd.randint(0, len(body) - 1)]
        elif choice == 3:  # no file part
            body, ctype = self._multipart([("other", None, data)])
        else:  # a boundary that never appears
            body, ctype = data, "multipart/form-data; boundary=nowhere"
        headers = {"Content-Type": ctype}
        if self.rnd.random() < 0.5:
            headers["Content-Range"] = self._range(0, len(data) - 1, len(data))
        target = self._known() if self.rnd.random() < 0.5 else None
        path = f"/upload/{target.upload_id}/" if target else "/upload/"
        method = self.rnd.choice(["PUT", "POST"])
        return Request(method, path, headers, body, kind="multipart")

    def bad_json(self) -> Request:
        choice = self.rnd.randrange(5)
        if choice == 0:
            depth = self.rnd.choice([1000, 100_000])
            body = b"[" * depth + b"]" * depth
        elif choice == 1:
            body = json.dumps({"file": [256, -1, "x"], "filename": 5}).encode()
        elif choice == 2:
            body = b"\x80\xff{"
        elif choice == 3:
            body = json.dumps({"file": "not a list"}).encode()
        else:
            body = b'{"file": [1, 2, 3], "filename": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        target = self._known() if self.rnd.random() < 0.5 else None
        path = f"/upload/{target.upload_id}/" if target else "/upload/"
        return Request("PUT", path, {"Content-Type": "application/json"}, body, kind="json")

    def bad_completion(self) -> Request:
        upload = self._known()
        assert upload is not None
        choice = self.rnd.randrange(6)
        ctype = "application/json"
        if choice == 0:
            body = json.dumps({"md5": "0" * 32}).encode()
        elif choice == 1:
            body = json.dumps({"md5": "zz"}).encode()
        elif choice == 2:
            depth = self.rnd.choice([1000, 100_000])
            body = b"[" * depth + b"]" * depth
        elif choice == 3:
            body = b'{"md5": ' + b"{" * 3000
        elif choice == 4:
            body, ctype = b"md5=%ZZ&&&=", "application/x-www-form-urlencoded"
        else:
            body = b"[]"
        return Request(
            "POST",
            f"/upload/{upload.upload_id}/",
            {"Content-Type": ctype},
            body,
            kind="bad-complete",
        )

    def whole_file(self) -> Request:
        data, name = self._bytes(self.rnd.randint(1, 2048)), self._filename()
        md5 = hashlib.md5(data).hexdigest()
        if self.rnd.random() < 0.5:
            body, ctype = self._multipart(
                [("file", name or "blob", data), ("md5", None, md5.encode())]
            )
            return Request(
                "POST",
                "/upload/",
                {"Content-Type": ctype},
                body,
                ("whole", data, md5, name or "blob"),
                "whole",
            )
        headers = {"Content-Type": "application/octet-stream", **self._disposition(name)}
        return Request(
            "POST", f"/upload/?md5={md5}", headers, data, ("whole", data, md5, name), "whole"
        )

    def anything(self) -> Request:
        known = self._known()
        path = self.rnd.choice(
            [
                "/upload/",
                f"/upload/{known.upload_id}/" if known else "/upload/x/",
                f"/upload/{known.upload_id}" if known else "/upload/y",
                "/upload/a/b",
                "/upload/a/b/",
                f"/upload/{self._bytes(16).hex()}/extra",
                "/upload/%2e%2e/",
                "/upload/%00/",
                "/upload/" + quote("名前") + "/",
                "/upload/" + "a" * 3000 + "/",
                "/upload/?filename=" + quote("é" * 100),
            ]
        )
        method = self.rnd.choice(METHODS)
        body = self._bytes(self.rnd.randint(0, 64)) if method in ("PUT", "POST", "PATCH") else b""
        headers = {
            "Content-Type": self.rnd.choice(
                [
                    "application/octet-stream",
                    "application/json",
                    "text/plain",
                    "",
                    "multipart/form-data",
                ]
            )
        }
        return Request(method, path, headers, body, kind="anything")

    # -- the model -------------------------------------------------------------
    def apply(self, request: Request, status: int, answer: dict) -> str | None:
        """Apply a 200 to the model; returns what was wrong about it, if anything."""
        effect = request.effect
        if status != 200:
            return None
        if effect is None and "upload_id" in answer and answer["upload_id"] not in self.uploads:
            # e.g. a raw PUT without Content-Range: the body is a whole file, as the protocol says
            self.uploads[answer["upload_id"]] = Upload(answer["upload_id"], 0, known_bytes=False)
            return None
        if effect is None:
            if request.method in ("PUT", "POST") and request.kind not in ("status", "anything"):
                return f"accepted a request that must be refused: {request.kind}"
            return None
        if effect[0] == "new":
            _, total, data, name = effect
            upload = Upload(answer["upload_id"], total, bytearray(data), name)
            self.uploads[upload.upload_id] = upload
            if answer.get("offset") != len(data):
                return f"new upload {upload.upload_id} answered offset {answer.get('offset')}"
        elif effect[0] == "chunk":
            _, upload_id, start, data = effect
            upload = self.uploads[upload_id]
            if start != len(upload.data):
                return f"chunk at {start} accepted for {upload_id} at {len(upload.data)}"
            upload.data += data
            if answer.get("offset") != len(upload.data):
                return f"{upload_id} answered offset {answer.get('offset')}"
        elif effect[0] == "complete":
            _, upload_id, md5 = effect
            upload = self.uploads[upload_id]
            if upload.state != "uploading" or len(upload.data) != upload.total or md5 != upload.md5:
                return f"completion of {upload_id} accepted in state {upload.state}"
            upload.state = "processing"
        elif effect[0] == "whole":
            _, data, md5, name = effect
            upload = Upload(answer["upload_id"], len(data), bytearray(data), name, "processing")
            self.uploads[upload.upload_id] = upload
        return None
