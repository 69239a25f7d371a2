"""The upload client's parts, and its retry/resync logic against a scripted fake server.

The fake server speaks the protocol just far enough (create, append, complete,
status) and misbehaves on request: it answers 503 or 409, records a chunk and
drops the connection without answering, or records a late chunk behind the
client's back. It checks the client's checksum against the bytes it holds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chunky_redis.client import ClientError, ServerError, Uploader, UploadFailed, parse_size
from chunky_redis.client.errors import TransientError
from chunky_redis.client.state import StateFile, default_path, entry_key
from chunky_redis.client.transport import Backoff, ChunkBody, content_disposition, parse_header

KiB = 1024


# -- small parts -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, size",
    [
        ("4096", 4096),
        ("512K", 512 * KiB),
        ("8M", 8 << 20),
        ("8m", 8 << 20),
        ("8MiB", 8 << 20),
        ("8MB", 8 << 20),
        ("1.5G", 3 << 29),
        ("1T", 1 << 40),
        (" 2k ", 2048),
        (7, 7),
    ],
)
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "-1", "0", "8X", "8 M B", "1e6", 0])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_parse_header():
    assert parse_header("Authorization: Bearer a:b ") == ("Authorization", "Bearer a:b")
    assert parse_header("X-Empty:") == ("X-Empty", "")
    for bad in ("no colon", ": value", "Bad Name: x"):
        with pytest.raises(ValueError):
            parse_header(bad)


def test_content_disposition():
    assert content_disposition('a "b".txt') == 'attachment; filename="a \\"b\\".txt"'
    assert (
        content_disposition("ünï code.bin")
        == "attachment; filename*=UTF-8''%C3%BCn%C3%AF%20code.bin"
    )


def test_chunk_body_reads_only_its_range_block_by_block():
    data = os.urandom(10_000)
    hasher = hashlib.md5()
    seen: list[int] = []
    body = ChunkBody(
        io.BytesIO(data), 1000, 5000, hasher=hasher, on_block=seen.append, block_size=2048
    )
    assert len(body) == 5000
    blocks = []
    while block := body.read(4096):  # urllib3 asks for its own block size
        blocks.append(block)
    # Exactly what was asked for, up to the end of the range; never a byte past it.
    assert [len(b) for b in blocks] == [4096, 904]
    assert b"".join(blocks) == data[1000:6000]
    assert hasher.hexdigest() == hashlib.md5(data[1000:6000]).hexdigest()
    assert seen == [4096, 904]
    assert body.read() == b""
    assert len(body) == 5000  # requests asks for the length once; it stays the whole chunk's


def test_chunk_body_without_a_size_reads_one_block_at_a_time():
    """read() and iteration hold one block_size block at a time, never the whole range."""
    data = os.urandom(10_000)
    for read_all in (lambda b: iter(lambda: b.read(), b""), iter):
        body = ChunkBody(io.BytesIO(data), 1000, 5000, hasher=hashlib.md5(), block_size=2048)
        blocks = list(read_all(body))
        assert [len(b) for b in blocks] == [2048, 2048, 904]
        assert b"".join(blocks) == data[1000:6000]


def test_chunk_body_refuses_a_file_that_shrank():
    body = ChunkBody(io.BytesIO(b"abc"), 0, 10, hasher=hashlib.md5())
    assert body.read(100) == b"abc"
    with pytest.raises(ClientError, match="shrank"):
        body.read(100)


def test_backoff_grows_caps_honours_retry_after_and_gives_up():
    slept: list[float] = []
    backoff = Backoff(retries=6, base=1.0, cap=8.0, sleep=slept.append)
    error = TransientError("down")
    for _ in range(6):
        backoff.wait(error)
    for delay, ceiling in zip(slept, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    with pytest.raises(TransientError):
        backoff.wait(error)
    backoff.reset()
    backoff.wait(TransientError("busy", retry_after=5.0))
    assert slept[-1] >= 5.0
    assert backoff.total == 8


def test_state_file_round_trip_and_corruption(tmp_path):
    state = StateFile(tmp_path / "f.chunky.json")
    assert state.get("k") is None
    state.put("k", {"upload_id": "a" * 32})
    state.put("other", {"upload_id": "b" * 32})
    assert state.get("k")["upload_id"] == "a" * 32
    state.remove("k")
    assert state.get("k") is None and state.get("other") is not None
    state.remove("other")
    assert not state.path.exists(), "the last entry removes the file"
    state.path.write_text("{not json")
    assert state.get("k") is None
    state.put("k", {"upload_id": "c" * 32})
    assert json.loads(state.path.read_text())["uploads"]["k"]["upload_id"] == "c" * 32
    assert default_path("/x/y.bin") == Path("/x/y.bin.chunky.json")


# -- the fake server ---------------------------------------------------------------------


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, source: bytes):
        super().__init__(("127.0.0.1", 0), FakeHandler)
        self.source = source  # the client's file, to play a late chunk
        self.uploads: dict[str, dict] = {}
        self.faults: dict[tuple[str, int], str] = {}  # (method, n-th request of it) -> action
        self.counts: Counter = Counter()
        self.log: list[tuple[str, str, int | None, int]] = []  # method, path, start, status
        self.algorithm = "md5"
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/upload/"

    def new_upload(self, data: bytes, size: int, status: str = "uploading") -> str:
        upload_id = uuid.uuid4().hex
        self.uploads[upload_id] = {"data": bytearray(data), "size": size, "status": status}
        return upload_id

    def starts(self, status: int = 200) -> list[int | None]:
        return [start for method, _, start, code in self.log if method == "PUT" and code == status]


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeServer

    def log_message(self, *args):  # quiet
        pass

    def _fault(self) -> str | None:
        with self.server.lock:
            self.server.counts[self.command] += 1
            return self.server.faults.get((self.command, self.server.counts[self.command]))

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, code: int, data: dict, start: int | None = None, **headers: str) -> None:
        self.server.log.append((self.command, self.path, start, code))
        body = json.dumps(data).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _upload(self) -> tuple[str | None, dict | None]:
        match = re.fullmatch(r"/upload/(?:([0-9a-f]{32})/)?", self.path)
        upload_id = match.group(1) if match else None
        return upload_id, self.server.uploads.get(upload_id) if upload_id else None

    def _status(self, upload_id: str, upload: dict) -> dict:
        data = {
            "upload_id": upload_id,
            "status": upload["status"],
            "offset": len(upload["data"]),
            "size": upload["size"],
            "checksum_algorithm": self.server.algorithm,
        }
        if upload["status"] == "complete":
            data["final_name"] = f"done/{upload_id}"
        return data

    def do_PUT(self):
        fault = self._fault()
        start, end, total = map(
            int, re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", self.headers["Content-Range"]).groups()
        )
        body = self._body()
        if fault in ("503", "409"):
            return self._answer(
                int(fault), {"detail": "busy", "code": "busy"}, start, Retry_After="0"
            )
        if fault == "403":
            return self._answer(
                403,
                {
                    "detail": "Authentication credentials were not provided.",
                    "code": "not_authenticated",
                },
                start,
            )
        upload_id, upload = self._upload()
        if upload_id is None:
            upload_id = self.server.new_upload(b"", total)
            upload = self.server.uploads[upload_id]
        elif upload is None:
            return self._answer(404, {"detail": "No such upload.", "code": "not_found"}, start)
        if start != len(upload["data"]):
            offset = len(upload["data"])
            return self._answer(
                400,
                {
                    "detail": "mismatch",
                    "code": "offset_mismatch",
                    "offset": offset,
                    "expected_offset": offset,
                    "provided_offset": start,
                },
                start,
            )
        assert len(body) == end - start + 1 and total == upload["size"]
        upload["data"] += body
        if fault == "lost":  # recorded, but the answer never arrives
            self.server.log.append((self.command, self.path, start, 0))
            self.close_connection = True
            return
        self._answer(200, {"upload_id": upload_id, "offset": len(upload["data"])}, start)

    def do_GET(self):
        fault = self._fault()
        upload_id, upload = self._upload()
        if upload is None:
            return self._answer(404, {"detail": "No such upload.", "code": "not_found"})
        answer = self._status(upload_id, upload)
        if fault == "late_chunk":  # the dying client's last chunk lands after this answer
            offset = len(upload["data"])
            upload["data"] += self.server.source[offset : offset + 1000]
        self._answer(200, answer)

    def do_POST(self):
        fault = self._fault()
        upload_id, upload = self._upload()
        fields = json.loads(self._body())
        if upload["status"] != "uploading":
            return self._answer(400, {"detail": "done", "code": "already_complete"})
        algorithm = self.server.algorithm
        if fields.get(algorithm) != hashlib.new(algorithm, bytes(upload["data"])).hexdigest():
            return self._answer(400, {"detail": "mismatch", "code": "checksum_mismatch"})
        upload["status"] = "complete"
        if fault == "lost":
            self.close_connection = True
            return
        self._answer(200, {"upload_id": upload_id, "status": "processing"})


@pytest.fixture
def source(tmp_path) -> tuple[Path, bytes]:
    data = os.urandom(10 * 64 * KiB + 123)
    path = tmp_path / "file.bin"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def fake(source):
    server = FakeServer(source[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def make_uploader(path: Path, fake: FakeServer, **kwargs) -> Uploader:
    kwargs.setdefault("chunk_size", 64 * KiB)
    return Uploader(path, fake.endpoint, backoff=0.001, poll_interval=0.01, **kwargs)


def stored(fake: FakeServer, upload_id: str) -> bytes:
    return bytes(fake.uploads[upload_id]["data"])


# -- retries and resync --------------------------------------------------------------------


def test_retries_5xx_409_and_a_lost_answer(fake, source):
    path, data = source
    fake.faults = {("PUT", 2): "503", ("PUT", 4): "409", ("PUT", 6): "lost"}
    uploader = make_uploader(path, fake)
    result = uploader.run()
    assert result["status"] == "complete"
    assert stored(fake, result["upload_id"]) == data
    chunk_starts = list(range(0, len(data), 64 * KiB))
    # The lost chunk was recorded: the client learnt it from GET status and did not send it again.
    assert sorted(s for s in fake.starts() + fake.starts(0)) == chunk_starts
    assert fake.starts(503) == [64 * KiB] and len(fake.starts(409)) == 1
    assert uploader.stats.retries == 3
    assert uploader.stats.resyncs == 1


def test_offset_mismatch_resyncs_to_the_servers_offset(fake, source):
    """A resumed client meets the late chunk of the run it replaced."""
    path, data = source
    upload_id = fake.new_upload(data[: 3 * 64 * KiB], len(data))
    info = path.stat()
    StateFile(default_path(path)).put(
        entry_key(fake.endpoint, len(data), info.st_mtime_ns), {"upload_id": upload_id}
    )
    fake.faults = {("GET", 1): "late_chunk"}
    uploader = make_uploader(path, fake)
    result = uploader.run()
    assert result["upload_id"] == upload_id and result["status"] == "complete"
    assert stored(fake, upload_id) == data
    assert uploader.stats.resumed_from == 3 * 64 * KiB
    assert fake.starts(400) == [3 * 64 * KiB]
    assert fake.starts()[0] == 3 * 64 * KiB + 1000, "continued right after the late chunk"
    assert not default_path(path).exists()


def test_a_lost_completion_answer_is_not_an_error(fake, source):
    path, data = source
    fake.faults = {("POST", 1): "lost"}
    result = make_uploader(path, fake).run()
    assert result["status"] == "complete"
    assert [m for m, *_ in fake.log].count("POST") == 1  # the retry's answer: already complete


def test_refusals_are_not_retried(fake, source):
    path, _ = source
    fake.faults = {("PUT", 1): "403"}
    with pytest.raises(ServerError) as info:
        make_uploader(path, fake).run()
    assert info.value.status_code == 403 and info.value.code == "not_authenticated"
    assert fake.counts["PUT"] == 1


def test_gives_up_after_the_retries(fake, source):
    path, _ = source
    fake.faults = {("PUT", n): "503" for n in range(1, 10)}
    with pytest.raises(TransientError, match="503"):
        make_uploader(path, fake, retries=3).run()
    assert fake.counts["PUT"] == 4


def test_a_failed_upload_raises_upload_failed(fake, source):
    path, data = source
    upload_id = fake.new_upload(data, len(data), status="failed")
    info = path.stat()
    StateFile(default_path(path)).put(
        entry_key(fake.endpoint, len(data), info.st_mtime_ns), {"upload_id": upload_id}
    )
    with pytest.raises(UploadFailed) as info:
        make_uploader(path, fake).run()
    assert info.value.status["status"] == "failed"
    assert not default_path(path).exists(), "a failed upload is forgotten: the next run starts over"


def test_a_changed_file_is_not_resumed(fake, source):
    path, data = source
    old = fake.new_upload(data[: 64 * KiB], len(data))
    info = path.stat()
    StateFile(default_path(path)).put(
        entry_key(fake.endpoint, len(data), info.st_mtime_ns - 1), {"upload_id": old}
    )
    result = make_uploader(path, fake).run()
    assert result["upload_id"] != old
    assert fake.counts["PUT"] == 11


def test_follows_the_servers_checksum_algorithm(fake, source):
    path, data = source
    fake.algorithm = "sha256"
    result = make_uploader(path, fake).run()
    assert result["status"] == "complete"  # the fake checked the sha256


def test_no_resume_writes_no_state(fake, source):
    path, data = source
    fake.faults = {("PUT", 3): "403"}
    with pytest.raises(ServerError):
        make_uploader(path, fake, resume=False).run()
    assert not default_path(path).exists()
