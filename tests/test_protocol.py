"""The HTTP protocol, every endpoint, body format and error row.

Each test runs three ways: through Django's test client on fakeredis and on the
real Redis, and over a real socket against the bundled site under gunicorn
(real Redis, a real Celery worker).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis

from chunky_redis import runtime
from chunky_redis.core.filesystem import ChunkWriter
from chunky_redis.core.filesystem import FileSystemChunkStorage as ChunkStorage
from chunky_redis.core.s3 import S3ChunkStorage
from chunky_redis.core.s3writer import S3ChunkWriter
from tests.conftest import cleanup_keys, configure
from tests.support.api import Api, ClientApi, LiveApi, multipart
from tests.support.chunk_views import FileChunks, S3Chunks, chunk_view, use_s3_chunks
from tests.support.chunk_views import final_bytes as stored_final_bytes
from tests.support.processes import SiteProcess, WorkerProcess, live_env, read_signals, wait_for

MAX = 8 << 20


@dataclass
class Target:
    api: Api
    upload_dir: Path
    media_root: Path
    redis: redis.Redis
    prefix: str
    signals: object  # callable returning the list of received signals
    chunks: FileChunks | S3Chunks = None  # type: ignore[assignment]  # None: upload_dir

    def __post_init__(self) -> None:
        if self.chunks is None:
            self.chunks = FileChunks(self.upload_dir)
        self.initial_files = set(self.chunks.names())

    def final_name_ends(self, filename: str) -> str:
        """The S3 chunk storage names the object before the client names the file."""
        return "/upload" if isinstance(self.chunks, S3Chunks) else filename

    def files(self) -> list[str]:
        """Chunk files created since the test started (the live site is shared by a module)."""
        assert self.chunks is not None
        return [name for name in self.chunks.names() if name not in self.initial_files]

    def status(self, upload_id: str) -> dict:
        reply = self.api.get(f"/upload/{upload_id}/")
        assert reply.status == 200, reply.body
        return reply.data

    def wait_done(self, upload_id: str) -> dict:
        return wait_for(
            lambda: (s := self.status(upload_id))["status"] in ("complete", "failed") and s,
            timeout=30,
            message=f"upload {upload_id} to finish",
        )

    def lock_key(self, upload_id: str) -> str:
        return f"{self.prefix}:{{{upload_id}}}:lock"

    def completed_signals(self, upload_id: str) -> list[dict]:
        return [
            s
            for s in self.signals()
            if s["signal"] == "upload_completed" and s["upload_id"] == upload_id
        ]


@pytest.fixture(scope="module")
def live_site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocol-live")
    env = live_env(tmp, CHUNKY_MAX_BYTES=str(MAX))
    with SiteProcess(env, workers=2) as site, WorkerProcess(env):
        yield site, env


@pytest.fixture(
    params=[
        "fakeredis",
        "redis",
        pytest.param("cluster", marks=pytest.mark.live),
        pytest.param("live", marks=pytest.mark.live),
        pytest.param("s3", marks=pytest.mark.live),  # chunks in a local S3 (moto), on real Redis
    ]
)
def target(request, settings, tmp_path, signal_log):
    if request.param == "live":
        site, env = request.getfixturevalue("live_site")
        yield Target(
            LiveApi(site.url),
            Path(env["CHUNKY_UPLOAD_DIR"]),
            Path(env["MEDIA_ROOT"]),
            redis.Redis.from_url(env["REDIS_URL"]),
            env["CHUNKY_TEST_KEY_PREFIX"],
            lambda: read_signals(env),
        )
        return
    configure(settings, "redis" if request.param == "s3" else request.param, tmp_path)
    if request.param == "s3":
        use_s3_chunks(settings, request.getfixturevalue("local_s3_chunks"))
    settings.CHUNKY_REDIS_MAX_BYTES = MAX
    yield Target(
        ClientApi(),
        Path(settings.CHUNKY_REDIS_UPLOAD_DIR),
        Path(settings.MEDIA_ROOT),
        runtime.get_redis(),
        settings.CHUNKY_REDIS_KEY_PREFIX,
        lambda: [{"signal": name, **kwargs} for name, kwargs in signal_log],
        chunk_view(settings),
    )
    cleanup_keys(settings)


def data_of(size: int) -> bytes:
    return os.urandom(size)


def rng(start: int, end: int, total: int) -> str:
    return f"bytes {start}-{end}/{total}"


def create(t: Target, data: bytes, first: int, filename: str = "data.bin") -> str:
    reply = t.api.put(
        "/upload/",
        data[:first],
        content_range=rng(0, first - 1, len(data)),
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
    assert reply.status == 200, reply.body
    return reply.data["upload_id"]


def send(t: Target, upload_id: str, data: bytes, start: int, end: int):
    return t.api.put(
        f"/upload/{upload_id}/", data[start : end + 1], content_range=rng(start, end, len(data))
    )


def upload(t: Target, data: bytes, chunk: int) -> str:
    upload_id = create(t, data, min(chunk, len(data)))
    for start in range(chunk, len(data), chunk):
        reply = send(t, upload_id, data, start, min(start + chunk, len(data)) - 1)
        assert reply.status == 200, reply.body
    return upload_id


def complete(t: Target, upload_id: str, data: bytes):
    return t.api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()})


def assert_error(reply, status: int, code: str) -> dict:
    assert reply.status == status, reply.body
    assert reply.is_json, reply.headers
    assert reply.data["code"] == code, reply.data
    assert reply.data["detail"]
    return reply.data


def final_bytes(t: Target, status: dict) -> bytes:
    if isinstance(t.chunks, S3Chunks):
        return stored_final_bytes(status["final_name"])
    return (t.media_root / status["final_name"]).read_bytes()


# -- happy paths -----------------------------------------------------------------


def test_first_chunk_creates_an_upload(target):
    data = data_of(3000)
    reply = target.api.put("/upload/", data[:1000], content_range=rng(0, 999, 3000))
    assert reply.status == 200
    assert set(reply.data) >= {"upload_id", "offset", "expires"}
    assert re.fullmatch(r"[0-9a-f]{32}", reply.data["upload_id"])
    assert reply.data["offset"] == 1000
    assert reply.data["expires"].endswith("Z")
    expires = datetime.fromisoformat(reply.data["expires"].replace("Z", "+00:00"))
    assert timedelta(hours=23) < expires - datetime.now(timezone.utc) < timedelta(hours=25)
    assert target.chunks.holds(reply.data["upload_id"], data[:1000])


def test_raw_multipart_and_json_chunks_then_complete(target):
    data = data_of(3000) + b"\"quote's\\"
    total = len(data)
    upload_id = create(target, data, 1000, filename="mixed.bin")
    body, ctype = multipart(data[1000:2000], part_name="ignored-later.bin")
    reply = target.api.put(
        f"/upload/{upload_id}/", body, content_range=rng(1000, 1999, total), content_type=ctype
    )
    assert reply.status == 200, reply.body
    assert reply.data["offset"] == 2000
    payload = json.dumps({"file": list(data[2000:]), "filename": 'x"y.bin'}).encode()
    reply = target.api.put(
        f"/upload/{upload_id}/",
        payload,
        content_range=rng(2000, total - 1, total),
        content_type="application/json",
    )
    assert reply.status == 200, reply.body
    assert reply.data["offset"] == total

    status = target.api.get(f"/upload/{upload_id}/")
    assert status.headers["cache-control"] == "no-store"
    assert status.data["status"] == "uploading"
    assert (status.data["offset"], status.data["size"], status.data["filename"]) == (
        total,
        total,
        "mixed.bin",
    )

    reply = complete(target, upload_id, data)
    assert reply.status == 200, reply.body
    assert reply.data["upload_id"] == upload_id
    assert reply.data["size"] == total
    assert reply.data["status_url"].endswith(f"/upload/{upload_id}/")
    final = target.wait_done(upload_id)
    assert final["status"] == "complete"
    assert final_bytes(target, final) == data
    assert final["final_name"].endswith(target.final_name_ends("mixed.bin"))
    assert not target.chunks.exists(upload_id)


def test_multipart_filename_from_part_or_field(target):
    data = data_of(500)
    body, ctype = multipart(data, part_name="from-part.txt")
    reply = target.api.put("/upload/", body, content_type=ctype, content_range=rng(0, 499, 500))
    assert target.status(reply.data["upload_id"])["filename"] == "from-part.txt"
    body, ctype = multipart(data, part_name="from-part.txt", fields={"filename": "from-field.txt"})
    reply = target.api.put("/upload/", body, content_type=ctype, content_range=rng(0, 499, 500))
    assert target.status(reply.data["upload_id"])["filename"] == "from-field.txt"


def test_raw_filename_from_query_and_path_is_stripped(target):
    data = data_of(10)
    reply = target.api.put("/upload/?filename=../../etc/passwd", data)
    assert reply.status == 200
    assert target.status(reply.data["upload_id"])["filename"] == "passwd"
    assert target.files() == [f"{reply.data['upload_id']}.part"]


@pytest.mark.parametrize("kind", ["raw", "multipart"])
def test_missing_header_means_the_whole_file(target, kind):
    data = data_of(5000)
    if kind == "raw":
        reply = target.api.put("/upload/", data)
    else:
        body, ctype = multipart(data)
        reply = target.api.put("/upload/", body, content_type=ctype)
    assert reply.status == 200, reply.body
    assert reply.data["offset"] == 5000
    assert target.status(reply.data["upload_id"])["size"] == 5000
    assert complete(target, reply.data["upload_id"], data).status == 200
    assert final_bytes(target, target.wait_done(reply.data["upload_id"])) == data


def test_completion_as_a_form_field(target):
    data = data_of(2048)
    upload_id = upload(target, data, 1000)
    body = f"md5={hashlib.md5(data).hexdigest()}".encode()
    reply = target.api.request(
        "POST", f"/upload/{upload_id}/", body, "application/x-www-form-urlencoded"
    )
    assert reply.status == 200, reply.body
    assert target.wait_done(upload_id)["status"] == "complete"


@pytest.mark.parametrize("kind", ["multipart", "raw"])
def test_whole_file_and_md5_in_one_post(target, kind):
    data = data_of(4000)
    md5 = hashlib.md5(data).hexdigest()
    if kind == "multipart":
        body, ctype = multipart(data, part_name="one.bin", fields={"md5": md5})
        reply = target.api.request("POST", "/upload/", body, ctype)
    else:
        reply = target.api.request(
            "POST", f"/upload/?md5={md5}&filename=one.bin", data, "application/octet-stream"
        )
    assert reply.status == 200, reply.body
    final = target.wait_done(reply.data["upload_id"])
    assert final["status"] == "complete"
    assert final_bytes(target, final) == data


def test_completion_fires_one_signal(target):
    data = data_of(3000)
    upload_id = upload(target, data, 1024)
    assert complete(target, upload_id, data).status == 200
    target.wait_done(upload_id)
    assert_error(complete(target, upload_id, data), 400, "already_complete")
    wait_for(lambda: target.completed_signals(upload_id), message="upload_completed")
    [signal] = target.completed_signals(upload_id)
    assert signal["size"] == 3000
    assert signal["checksum"] == hashlib.md5(data).hexdigest()


# -- errors ------------------------------------------------------------------------


def test_unknown_upload_is_a_json_404(target):
    unknown = uuid.uuid4().hex
    assert_error(target.api.get(f"/upload/{unknown}/"), 404, "not_found")
    assert_error(
        target.api.put(f"/upload/{unknown}/", b"x", content_range=rng(0, 0, 1)), 404, "not_found"
    )
    assert_error(target.api.post_json(f"/upload/{unknown}/", {"md5": "0" * 32}), 404, "not_found")
    assert_error(target.api.get("/upload/not-an-id/"), 404, "not_found")
    assert_error(target.api.get("/upload/a/b/c/"), 404, "not_found")
    assert target.files() == []


def test_no_chunk_in_the_request(target):
    body, ctype = multipart(None, fields={"other": "x"})
    assert_error(target.api.put("/upload/", body, content_type=ctype), 400, "missing_chunk")
    body, ctype = multipart(b"abc", field_name="not_file")
    assert_error(target.api.put("/upload/", body, content_type=ctype), 400, "missing_chunk")
    assert_error(target.api.put("/upload/", b""), 400, "missing_chunk")
    payload = json.dumps({"filename": "x"}).encode()
    assert_error(
        target.api.put("/upload/", payload, content_type="application/json"), 400, "missing_chunk"
    )
    assert target.files() == []


@pytest.mark.parametrize(
    "header",
    [
        "bytes 0-9",
        "bytes=0-9/10",
        "bytes 5-2/10",
        "bytes 0-10/10",
        "bytes -1-3/10",
        "items 0-9/10",
        "bytes 0-9/x",
    ],
)
def test_bad_content_range(target, header):
    assert_error(
        target.api.put("/upload/", b"x" * 10, content_range=header), 400, "bad_content_range"
    )
    assert target.files() == []


def test_size_over_the_limit_writes_nothing(target, monkeypatch):
    """Judged while it happens, not after the refusal cleaned up: in process, every chunk
    file opened and the furthest byte written are recorded."""
    opened: list[str] = []
    furthest: list[int] = [0]
    real_writer, real_write = ChunkStorage.writer, ChunkWriter.write

    def writer(self, upload_id, **kwargs):
        opened.append(upload_id)
        return real_writer(self, upload_id, **kwargs)

    def write(self, data):
        try:
            real_write(self, data)
        finally:  # also when the write refused the block: what reached the file counts
            furthest[0] = max(furthest[0], self.position)

    if isinstance(target.chunks, S3Chunks):
        real_writer, real_write = S3ChunkStorage.writer, S3ChunkWriter.write
        monkeypatch.setattr(S3ChunkStorage, "writer", writer)
        monkeypatch.setattr(S3ChunkWriter, "write", write)
    else:
        monkeypatch.setattr(ChunkStorage, "writer", writer)
        monkeypatch.setattr(ChunkWriter, "write", write)
    in_process = isinstance(target.api, ClientApi)

    # A declared size over the limit: refused before any file exists.
    assert_error(
        target.api.put("/upload/", b"x" * 10, content_range=rng(0, 9, MAX + 1)), 400, "too_large"
    )
    big = b"y" * (MAX + 1)
    assert_error(target.api.put("/upload/", big), 400, "too_large")
    assert opened == [] and target.files() == []
    # A multipart body announces no size: its file is written up to the limit, never beyond.
    body, ctype = multipart(big)
    assert_error(target.api.put("/upload/", body, content_type=ctype), 400, "too_large")
    if in_process:
        assert len(opened) == 1
        assert 0 < furthest[0] <= MAX
    assert target.files() == []


def test_offset_mismatch_reports_the_server_offset_and_changes_nothing(target):
    data = data_of(4000)
    upload_id = create(target, data, 1000)
    before = target.chunks.fingerprint(upload_id)
    for start, end in [(2000, 2999), (500, 1499), (0, 999)]:
        error = assert_error(send(target, upload_id, data, start, end), 400, "offset_mismatch")
        assert (error["offset"], error["expected_offset"], error["provided_offset"]) == (
            1000,
            1000,
            start,
        )
    assert target.status(upload_id)["offset"] == 1000
    assert target.chunks.fingerprint(upload_id) == before
    for start in (1000, 2000, 3000):
        assert send(target, upload_id, data, start, start + 999).status == 200
    assert complete(target, upload_id, data).status == 200
    assert final_bytes(target, target.wait_done(upload_id)) == data


def test_retry_of_the_accepted_chunk_returns_the_offset_and_corrupts_nothing(target):
    data = data_of(3000)
    upload_id = create(target, data, 1000)
    assert send(target, upload_id, data, 1000, 1999).status == 200
    tampered = data[:1000] + bytes(1000) + data[2000:]
    error = assert_error(send(target, upload_id, tampered, 1000, 1999), 400, "offset_mismatch")
    assert error["offset"] == 2000
    assert send(target, upload_id, data, 2000, 2999).status == 200
    assert target.chunks.holds(upload_id, data)


def test_total_cannot_change(target):
    data = data_of(3000)
    upload_id = create(target, data, 1000)
    reply = target.api.put(
        f"/upload/{upload_id}/", data[1000:2000], content_range=rng(1000, 1999, 5000)
    )
    assert_error(reply, 400, "total_changed")
    assert target.status(upload_id)["size"] == 3000


def test_a_new_upload_must_start_at_zero(target):
    error = assert_error(
        target.api.put("/upload/", b"x" * 10, content_range=rng(10, 19, 100)),
        400,
        "offset_mismatch",
    )
    assert error["offset"] == 0
    assert target.files() == []


def test_body_length_must_match_the_range(target):
    data = data_of(3000)
    upload_id = create(target, data, 1000)
    short = target.api.put(
        f"/upload/{upload_id}/", data[1000:1500], content_range=rng(1000, 1999, 3000)
    )
    assert_error(short, 400, "length_mismatch")
    for part in (data[1000:1500], data[1000:2500]):
        body, ctype = multipart(part)
        reply = target.api.put(
            f"/upload/{upload_id}/", body, content_range=rng(1000, 1999, 3000), content_type=ctype
        )
        assert_error(reply, 400, "length_mismatch")
    assert target.status(upload_id)["offset"] == 1000
    assert send(target, upload_id, data, 1000, 2999).status == 200
    assert complete(target, upload_id, data).status == 200
    assert final_bytes(target, target.wait_done(upload_id)) == data


def test_md5_mismatch_then_the_right_md5(target):
    data = data_of(2000)
    upload_id = upload(target, data, 1000)
    assert_error(
        target.api.post_json(f"/upload/{upload_id}/", {"md5": "0" * 32}), 400, "checksum_mismatch"
    )
    assert_error(
        target.api.post_json(f"/upload/{upload_id}/", {"md5": "not hex"}), 400, "bad_checksum"
    )
    assert_error(target.api.post_json(f"/upload/{upload_id}/", {}), 400, "missing_checksum")
    assert target.status(upload_id)["status"] == "uploading"
    assert complete(target, upload_id, data).status == 200
    assert target.wait_done(upload_id)["status"] == "complete"


def test_one_shot_with_a_wrong_md5_leaves_nothing(target):
    body, ctype = multipart(b"abc" * 100, fields={"md5": "0" * 32})
    assert_error(target.api.request("POST", "/upload/", body, ctype), 400, "checksum_mismatch")
    body, ctype = multipart(b"abc" * 100)
    assert_error(target.api.request("POST", "/upload/", body, ctype), 400, "missing_checksum")
    assert target.files() == []


def test_completion_before_every_byte_arrived(target):
    data = data_of(3000)
    upload_id = create(target, data, 1000)
    error = assert_error(complete(target, upload_id, data), 400, "incomplete")
    assert (error["offset"], error["size"]) == (1000, 3000)


def test_chunk_after_completion(target):
    data = data_of(2000)
    upload_id = upload(target, data, 1000)
    assert complete(target, upload_id, data).status == 200
    assert_error(send(target, upload_id, data, 1000, 1999), 400, "already_complete")


def test_a_held_lock_gives_409_and_changes_nothing(target):
    data = data_of(2000)
    upload_id = create(target, data, 1000)
    target.redis.set(target.lock_key(upload_id), "someone-else", px=60_000)
    reply = send(target, upload_id, data, 1000, 1999)
    assert_error(reply, 409, "locked")
    assert reply.headers["retry-after"] == "1"
    assert_error(complete(target, upload_id, data), 409, "locked")
    assert target.status(upload_id)["offset"] == 1000
    assert target.redis.get(target.lock_key(upload_id)) == b"someone-else"
    target.redis.delete(target.lock_key(upload_id))
    assert send(target, upload_id, data, 1000, 1999).status == 200


def test_other_methods_and_bad_bodies(target):
    data = data_of(100)
    upload_id = create(target, data, 100)
    assert_error(target.api.request("DELETE", f"/upload/{upload_id}/"), 405, "method_not_allowed")
    assert_error(target.api.get("/upload/"), 405, "method_not_allowed")
    bad_json = target.api.put("/upload/", b"{not json", content_type="application/json")
    assert_error(bad_json, 400, "bad_body")
    not_bytes = json.dumps({"file": [1, 256, "a"]}).encode()
    assert_error(
        target.api.put("/upload/", not_bytes, content_type="application/json"),
        400,
        "bad_json_chunk",
    )
    evil = b"__import__('os').system('touch /tmp/chunky-pwned')"
    assert_error(target.api.put("/upload/", evil, content_type="application/json"), 400, "bad_body")
    assert not os.path.exists("/tmp/chunky-pwned")
    garbage = b"--nope\r\n\r\n"
    reply = target.api.put("/upload/", garbage, content_type="multipart/form-data; boundary=zzz")
    assert reply.status == 400 and reply.is_json


@pytest.mark.parametrize("kind", ["multipart", "raw-named"])
def test_an_empty_file_can_be_uploaded(target, kind):
    if kind == "multipart":
        body, ctype = multipart(b"", part_name="empty.txt")
        reply = target.api.put("/upload/", body, content_type=ctype)
    else:
        reply = target.api.put("/upload/?filename=empty.txt", b"")
    assert reply.status == 200, reply.body
    assert reply.data["offset"] == 0
    upload_id = reply.data["upload_id"]
    assert target.status(upload_id)["size"] == 0
    assert complete(target, upload_id, b"").status == 200
    final = target.wait_done(upload_id)
    assert final["status"] == "complete"
    assert final_bytes(target, final) == b""


EDGE_CHUNK = 64 << 10


@pytest.mark.parametrize(
    "size", [1, EDGE_CHUNK, EDGE_CHUNK + 1], ids=["one-byte", "one-chunk", "one-chunk-and-a-byte"]
)
def test_body_size_edges(target, size):
    """With Content-Range, as the client sends them (the empty file is the test above)."""
    data = data_of(size)
    upload_id = upload(target, data, EDGE_CHUNK)
    assert target.status(upload_id)["offset"] == size
    assert complete(target, upload_id, data).status == 200
    final = target.wait_done(upload_id)
    assert (final["status"], final["size"]) == ("complete", size)
    assert final_bytes(target, final) == data
    # The live worker sends the signal after the status reads complete: wait for it, then once.
    wait_for(lambda: target.completed_signals(upload_id), message="upload_completed")
    assert len(target.completed_signals(upload_id)) == 1


def test_a_refused_chunk_leaves_the_connection_usable(target):
    """The refusal arrives before the body is read; the server reads the rest, so
    the client gets the answer and its keep-alive connection goes on working."""
    data = data_of(6 << 20)
    upload_id = create(target, data, 3 << 20)
    for _ in range(3):
        stale = send(target, upload_id, data, 0, (3 << 20) - 1)  # 3 MiB refused before reading
        assert_error(stale, 400, "offset_mismatch")
        assert target.status(upload_id)["offset"] == 3 << 20
    assert send(target, upload_id, data, 3 << 20, (6 << 20) - 1).status == 200


def test_a_chunked_transfer_encoding_is_refused_not_read_as_empty(target):
    if isinstance(target.api, LiveApi):
        reply = target.api.request(
            "PUT", "/upload/?filename=x.bin", iter([b"abc", b"def"]), "application/octet-stream"
        )
    else:
        reply = target.api.put("/upload/", b"abcdef", headers={"Transfer-Encoding": "chunked"})
    assert_error(reply, 411, "length_required")
    assert target.files() == []
