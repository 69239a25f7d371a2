"""The S3 chunk storage: part arithmetic, and its layout in a local S3 that enforces S3's
5 MiB minimum part (moto's server with its defaults).

The protocol, race and crash suites run on this storage too (their ``s3`` parameters,
with 64 KiB parts in a moto that allows them); here are the rules those cannot see.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import BinaryIO

import pytest

import tasks  # noqa: F401  (the bundled Celery app: eager, configured from tests/settings.py)
from chunky_redis import runtime
from chunky_redis.core import s3parts
from chunky_redis.core.errors import ChunkFileMissing, LengthMismatch, StorageError, TooLarge
from chunky_redis.core.http import ByteRange
from chunky_redis.core.s3 import S3ChunkStorage
from chunky_redis.core.s3bucket import Readable
from chunky_redis.core.s3parts import MultipartUpload
from chunky_redis.core.storage import FinalTarget
from chunky_redis.processing.completion import purge_expired_uploads
from tests.support.chunk_views import final_bytes, use_s3_chunks
from tests.support.s3 import LocalS3
from tests.test_sweeper import start as start_upload

MiB = s3parts.MiB
BUCKET = "chunky-parts"

# -- arithmetic (no S3) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "offset, size, number, start",
    [
        (0, 5 * MiB, 1, 0),
        (5 * MiB - 1, 5 * MiB, 1, 0),
        (5 * MiB, 5 * MiB, 2, 5 * MiB),
        (8 * MiB + 3, 8 * MiB, 2, 8 * MiB),
        (10_000 * 8 * MiB - 1, 8 * MiB, 10_000, 9_999 * 8 * MiB),
    ],
)
def test_which_part_holds_a_byte(offset, size, number, start):
    assert s3parts.part_number(offset, size) == number
    assert s3parts.part_start(offset, size) == start


@pytest.mark.parametrize(
    "size, count, last",
    [
        (0, 0, 0),
        (1, 1, 1),
        (8 * MiB, 1, 8 * MiB),
        (8 * MiB + 1, 2, 1),
        (20 * MiB + 7, 3, 4 * MiB + 7),
        (10_000 * 8 * MiB, 10_000, 8 * MiB),
    ],
)
def test_parts_of_an_upload_and_its_last_part(size, count, last):
    assert s3parts.parts_count(size, 8 * MiB) == count
    assert s3parts.last_part_size(size, 8 * MiB) == last


@pytest.mark.parametrize(
    "max_bytes, part",
    [
        (None, 8 * MiB),  # 78 GiB at most
        (1 << 30, 8 * MiB),
        (10_000 * 8 * MiB, 8 * MiB),  # exactly 10,000 parts of 8 MiB
        (10_000 * 8 * MiB + 1, 9 * MiB),  # one byte more: the next whole MiB
        (100 << 30, 11 * MiB),
        (5 << 40, 525 * MiB),  # S3's largest object
    ],
)
def test_the_part_size_keeps_within_10000_parts(max_bytes, part):
    chosen = s3parts.choose_part_size(max_bytes)
    assert chosen == part
    assert s3parts.MIN_PART_SIZE <= chosen <= s3parts.MAX_PART_SIZE
    if max_bytes is not None:
        assert s3parts.parts_count(max_bytes, chosen) <= s3parts.MAX_PARTS


def _offline_storage(part_size: int) -> S3ChunkStorage:
    """A storage whose upload is known already: refusals happen before any S3 request."""
    storage = S3ChunkStorage(None, BUCKET, object_key=lambda i: i, work_prefix="w/")
    storage._known["u"] = MultipartUpload("mpu", part_size)
    return storage


def _open(storage: S3ChunkStorage, start: int, limit: int | None, upload_id: str = "u"):
    return storage.writer(
        upload_id,
        create=False,
        start=start,
        limit=limit,
        on_block=lambda block: None,
        overflow=lambda: LengthMismatch(0, None),
    )


def test_a_chunk_past_the_10000th_part_is_refused_before_a_byte():
    storage = _offline_storage(5 * MiB)
    ceiling = 10_000 * 5 * MiB
    _open(storage, ceiling - 10, 10)  # up to the last byte of part 10,000: fine
    with pytest.raises(TooLarge) as refused:
        _open(storage, ceiling - 10, 11)
    assert refused.value.limit == ceiling
    writer = _open(storage, ceiling - 10, None)  # a body of unknown length: refused as it runs past
    with pytest.raises(TooLarge):
        writer.write(b"x" * 11)
    assert writer.written == 0


# -- in a local S3 with S3's own rules ---------------------------------------------------


@pytest.fixture(scope="module")
def strict_s3():
    s3 = LocalS3().start()  # moto's default: parts but the last of at least 5 MiB
    s3.client().create_bucket(Bucket=BUCKET)
    yield s3
    s3.stop()


@pytest.fixture
def storage(strict_s3, request):
    folder = hashlib.md5(request.node.nodeid.encode()).hexdigest()[:10]
    return S3ChunkStorage(
        strict_s3.client(),
        BUCKET,
        object_key=lambda upload_id: f"{folder}/final/{upload_id}",
        work_prefix=f"{folder}/work/",
        part_size=5 * MiB,
    )


class KeepKey(FinalTarget):
    """A final storage in the same bucket: it takes the object where it is."""

    def adopt(self, path: str, name: str) -> str | None:
        return None

    def save(self, name: str, stream: BinaryIO) -> str:
        raise AssertionError("the object must not be copied")

    def adopt_object(self, bucket: str, key: str) -> str | None:
        return key


class Elsewhere(FinalTarget):
    """A final storage that is not in the bucket: the object is streamed there."""

    def __init__(self) -> None:
        self.saved: dict[str, bytes] = {}

    def adopt(self, path: str, name: str) -> str | None:
        return None

    def save(self, name: str, stream: BinaryIO) -> str:
        self.saved[name] = stream.read()
        return name


def send(storage: S3ChunkStorage, upload_id: str, data: bytes, start: int, *, create: bool = False):
    """One chunk, written in blocks of 64 KiB as a request body arrives."""
    writer = storage.writer(
        upload_id,
        create=create,
        start=start,
        limit=len(data),
        on_block=lambda block: None,
        overflow=lambda: LengthMismatch(len(data), None),
    )
    view = memoryview(data)
    for i in range(0, len(data), 64 * 1024):
        writer.write(bytes(view[i : i + 64 * 1024]))
    writer.close()


def upload(storage: S3ChunkStorage, upload_id: str, data: bytes, chunk: int) -> None:
    send(storage, upload_id, data[:chunk], 0, create=True)
    for start in range(chunk, len(data), chunk):
        send(storage, upload_id, data[start : start + chunk], start)


def finish(storage: S3ChunkStorage, upload_id: str, size: int, target: FinalTarget | None = None):
    storage.truncate(upload_id, size)
    return storage.move_into(upload_id, target or KeepKey(), "name")


def object_of(storage: S3ChunkStorage, upload_id: str) -> tuple[bytes, str]:
    reply = storage.client.get_object(Bucket=BUCKET, Key=storage.object_key(upload_id))
    return reply["Body"].read(), reply["ETag"].strip('"')


@pytest.mark.live
@pytest.mark.parametrize(
    "chunk", [64 * 1024, 1 * MiB, 5 * MiB, 8 * MiB, 3 * MiB + 7, 5 * MiB + 1, 12_345]
)
def test_any_chunk_size_makes_parts_of_5_mib_and_a_short_last(storage, chunk):
    data = os.urandom(11 * MiB + 4321)  # two full parts and a short last one
    upload(storage, "u1", data, chunk)
    mpu = storage.multipart("u1", cached=False)
    assert mpu is not None
    parts = storage._parts("u1", mpu)
    assert {n: size for n, (_, size) in parts.items()} == {1: 5 * MiB, 2: 5 * MiB}
    assert storage.size("u1") == len(data)

    assert finish(storage, "u1", len(data)) == storage.object_key("u1")
    body, etag = object_of(storage, "u1")
    assert body == data
    assert etag.endswith("-3")  # completed from its three parts: no copy
    assert list(storage._keys(storage.work_key("u1"))) == []  # the incomplete parts are gone
    assert not storage._abort(storage.object_key("u1"), set())  # no multipart upload left


@pytest.mark.live
@pytest.mark.parametrize("size", [5 * MiB, 10 * MiB, 1, 0])
def test_an_upload_ending_on_a_part_boundary_or_tiny_or_empty(storage, size):
    data = os.urandom(size)
    if size:
        upload(storage, "u2", data, 1 * MiB)
    else:
        send(storage, "u2", b"", 0, create=True)
    finish(storage, "u2", size)
    assert object_of(storage, "u2")[0] == data


@pytest.mark.live
def test_dead_writes_past_the_offset_never_reach_the_object(storage):
    """Crashed requests wrote parts and tails past the recorded offset, longer and with other
    bytes, even past the length the upload ends with (a length declared later, as tus may);
    the retries, shorter, are what the object holds."""
    data = os.urandom(8 * MiB)
    send(storage, "u3", data[: 3 * MiB], 0, create=True)
    send(storage, "u3", os.urandom(13 * MiB), 3 * MiB)  # dead: parts 1 to 3, a tail at 16 MiB
    send(storage, "u3", data[3 * MiB : 4 * MiB], 3 * MiB)  # the retry: only a tail at 4 MiB
    send(storage, "u3", os.urandom(64 * 1024), 4 * MiB)  # dead again, within part 1
    send(storage, "u3", data[4 * MiB :], 4 * MiB)
    # Filling part 1 dropped the dead tails (past the offset it started at); the chain stays
    # until a later offset no longer needs it.
    tails = [int(k.rsplit("/", 1)[1]) for k in storage._keys(storage.work_key("u3", "tail/"))]
    assert tails == [3 * MiB, 4 * MiB, 8 * MiB]
    finish(storage, "u3", len(data))
    assert object_of(storage, "u3")[0] == data


@pytest.mark.live
def test_completion_is_safe_to_repeat(storage):
    data = os.urandom(6 * MiB)
    upload(storage, "u4", data, 4 * MiB)
    storage.truncate("u4", len(data))
    storage._finish("u4", len(data))  # completed, then the worker died before cleaning up
    assert storage.exists("u4") and storage.size("u4") == len(data)
    assert finish(storage, "u4", len(data)) == storage.object_key("u4")
    assert storage.size("u4") == len(data)  # the completed object
    assert finish(storage, "u4", len(data)) == storage.object_key("u4")  # and once more
    assert object_of(storage, "u4")[0] == data


@pytest.mark.live
def test_a_final_storage_elsewhere_gets_the_bytes_streamed(storage):
    data = os.urandom(5 * MiB + 10)
    upload(storage, "u5", data, 2 * MiB)
    target = Elsewhere()
    assert finish(storage, "u5", len(data), target) == "name"
    assert target.saved["name"] == data
    assert not storage.exists("u5")  # nothing left in the bucket


@pytest.mark.live
def test_the_digest_reads_the_stored_bytes_once_their_length_is_sealed(storage):
    data = os.urandom(5 * MiB + 99)
    upload(storage, "u6", data[: 4 * MiB], 3 * MiB)
    with pytest.raises(StorageError):  # in progress: S3 cannot read parts back ...
        storage.digest("u6", "sha256", 4 * MiB)
    send(storage, "u6", data[4 * MiB :], 4 * MiB)  # ... and the upload goes on
    storage.truncate("u6", len(data))
    assert storage.digest("u6", "sha256", len(data)) == hashlib.sha256(data).hexdigest()
    assert finish(storage, "u6", len(data)) == storage.object_key("u6")
    assert object_of(storage, "u6")[0] == data


@pytest.mark.live
def test_delete_aborts_the_upload_and_leaves_a_completed_object(storage):
    data = os.urandom(7 * MiB)
    upload(storage, "u7", data, 2 * MiB)
    upload(storage, "u8", data, 2 * MiB)
    assert sorted(storage.iter_ids()) == ["u7", "u8"]
    assert list(storage.iter_ids(older_than_s=3600)) == []  # just written
    assert storage.delete("u7") is True
    assert not storage.exists("u7") and storage.size("u7") is None
    with pytest.raises(ChunkFileMissing):
        send(storage, "u7", b"more", 7 * MiB)
    assert storage.delete("u7") is False
    finish(storage, "u8", len(data))
    assert storage.delete("u8") is False  # the completed object is not the storage's to delete
    assert object_of(storage, "u8")[0] == data
    assert list(storage.iter_ids()) == []


@pytest.mark.live
def test_a_lost_tail_fails_loudly(storage):
    data = os.urandom(2 * MiB)
    upload(storage, "u9", data, 1 * MiB)
    storage.client.delete_object(Bucket=BUCKET, Key=storage.tail_key("u9", 1 * MiB))
    with pytest.raises(ChunkFileMissing):
        finish(storage, "u9", len(data))


@pytest.mark.live
def test_the_part_size_is_the_uploads_own(storage):
    data = os.urandom(6 * MiB)
    send(storage, "u10", data[: 3 * MiB], 0, create=True)
    storage.part_size = 6 * MiB  # the setting changes mid-upload
    send(storage, "u10", data[3 * MiB :], 3 * MiB)
    mpu = storage.multipart("u10", cached=False)
    assert mpu is not None and mpu.part_size == 5 * MiB
    finish(storage, "u10", len(data))
    assert object_of(storage, "u10")[0] == data


def test_streamed_reads_keep_their_size():
    body = Readable(io.BytesIO(b"abcdef"))
    assert body.read(4) == b"abcd" and body.read() == b"ef"


# -- through the service: expiry, orphans, leftovers (the sweeper), verification ----------


@pytest.fixture
def s3_chunky(chunky, local_s3_chunks):
    use_s3_chunks(chunky, local_s3_chunks)
    return chunky


def _in_progress(storage: S3ChunkStorage, upload_id: str) -> bool:
    """Work objects or a multipart upload left for the upload."""
    key = storage.object_key(upload_id)
    uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=key)
    listed = [u for u in uploads.get("Uploads", []) if u["Key"] == key]
    return bool(listed) or any(storage._keys(storage.work_key(upload_id)))


@pytest.mark.live
def test_the_sweeper_aborts_expired_uploads_and_orphans(s3_chunky, store, client, signal_log):
    s3_chunky.CHUNKY_REDIS_ORPHAN_GRACE = 0
    s3_chunky.CHUNKY_REDIS_EXPIRATION = 0.001
    expired = start_upload(client, os.urandom(300_000), 400_000)  # parts and a tail
    s3_chunky.CHUNKY_REDIS_EXPIRATION = 3600
    live = start_upload(client, os.urandom(1000), 2000)
    storage = runtime.get_storage()
    assert isinstance(storage, S3ChunkStorage)
    storage._create("0" * 32)  # a creation whose request died before its record existed
    while store.now() <= store.get(expired).expires:
        pass

    result = purge_expired_uploads()

    assert (result.expired, result.orphans) == (1, 1)
    assert not _in_progress(storage, expired) and not _in_progress(storage, "0" * 32)
    assert _in_progress(storage, live)
    assert client.get(f"/upload/{expired}/").status_code == 410


@pytest.mark.live
@pytest.mark.parametrize("verify_stored_bytes", [False, True])
def test_finalization_completes_into_the_final_object(
    s3_chunky, store, client, signal_log, verify_stored_bytes
):
    s3_chunky.CHUNKY_REDIS_VERIFY_STORED_BYTES = verify_stored_bytes
    data = os.urandom(200_000)
    upload_id = start_upload(client, data[:150_000], len(data))
    reply = client.put(
        f"/upload/{upload_id}/",
        data=data[150_000:],
        content_type="application/octet-stream",
        headers={"Content-Range": f"bytes 150000-{len(data) - 1}/{len(data)}"},
    )
    assert reply.status_code == 200
    reply = client.post(
        f"/upload/{upload_id}/",
        data={"md5": hashlib.md5(data).hexdigest()},
        content_type="application/json",
    )
    assert reply.status_code == 200, reply.json()
    done = client.get(f"/upload/{upload_id}/").json()
    assert done["status"] == "complete", done
    assert done["final_name"] == f"chunky_redis/{upload_id}/upload"
    storage = runtime.get_storage()
    assert isinstance(storage, S3ChunkStorage)
    head = storage.client.head_object(Bucket=storage.bucket, Key=storage.object_key(upload_id))
    assert head["ETag"].strip('"').endswith("-4")  # its parts of 64 KiB: completed, not copied
    assert final_bytes(done["final_name"]) == data
    assert s3_chunky.AWS_LOCATION in done["final_url"]
    assert not _in_progress(storage, upload_id)
    # A leftover of a worker that died between completing and cleaning up: swept, the object kept.
    storage.put_tail(upload_id, 0, 10, b"x" * 10)
    s3_chunky.CHUNKY_REDIS_ORPHAN_GRACE = 0
    assert purge_expired_uploads().orphans == 1
    assert not _in_progress(storage, upload_id)
    assert final_bytes(done["final_name"]) == data


@pytest.mark.live
def test_termination_aborts_the_multipart_upload(s3_chunky, store):
    service = runtime.get_service(on_complete=lambda upload: None)
    upload = service.create(owner="o", length=300_000, max_bytes=None)
    session = service.start_chunk(
        owner="o",
        upload_id=upload.upload_id,
        byte_range=ByteRange(0, 199_999, 300_000),
        length=200_000,
        max_bytes=None,
    )
    session.write(os.urandom(200_000))  # three parts of 64 KiB and a tail
    session.finish()
    storage = runtime.get_storage()
    assert isinstance(storage, S3ChunkStorage)
    assert _in_progress(storage, upload.upload_id)

    service.terminate(owner="o", upload_id=upload.upload_id)

    assert not _in_progress(storage, upload.upload_id)
    assert store.get(upload.upload_id) is None
