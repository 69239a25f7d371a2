"""The core's creation without data, deferred length and termination (for the tus and
IETF dialects), on the core alone: fakeredis and the real Redis."""

from __future__ import annotations

import hashlib
import os

import pytest

from chunky_redis.core import errors as exc
from chunky_redis.core.context import Policy
from chunky_redis.core.filesystem import FileSystemChunkStorage
from chunky_redis.core.http import ByteRange
from chunky_redis.core.quotas import Quota, QuotaTracker
from chunky_redis.core.store import PROCESSING, UNKNOWN_LENGTH
from chunky_redis.core.uploads import UploadService

pytestmark = pytest.mark.django_db


@pytest.fixture
def completed():
    return []


@pytest.fixture
def service(chunky, store, completed):
    return UploadService(
        store=store,
        storage=FileSystemChunkStorage(chunky.CHUNKY_REDIS_UPLOAD_DIR, fsync=False),
        policy=Policy(algorithm="md5"),
        on_complete=completed.append,
        quotas=QuotaTracker(store.redis, prefix=store.prefix, clock=store.clock),
    )


def chunk_file(chunky, upload_id: str) -> str:
    return os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part")


def append(service, upload_id: str, data: bytes, start: int, total: int):
    session = service.start_chunk(
        owner="u1",
        upload_id=upload_id,
        byte_range=ByteRange(start, start + len(data) - 1, total),
        length=len(data),
        max_bytes=None,
    )
    session.write(data)
    return session.finish()


def test_an_upload_created_without_data(chunky, store, service, completed):
    upload = service.create(owner="u1", length=10, max_bytes=None, filename="a.bin")
    assert (upload.offset, upload.size, upload.filename) == (0, 10, "a.bin")
    assert os.path.getsize(chunk_file(chunky, upload.upload_id)) == 0
    assert store.get(upload.upload_id).offset == 0
    append(service, upload.upload_id, b"0123456789", 0, 10)
    done = service.complete(
        owner="u1", upload_id=upload.upload_id, checksum=hashlib.md5(b"0123456789").hexdigest()
    )
    assert done.status == PROCESSING and [u.upload_id for u in completed] == [upload.upload_id]


def test_creation_refuses_a_length_over_the_limit(chunky, service):
    with pytest.raises(exc.TooLarge) as refused:
        service.create(owner="u1", length=11, max_bytes=10)
    assert (refused.value.size, refused.value.limit) == (11, 10)
    directory = chunky.CHUNKY_REDIS_UPLOAD_DIR
    assert not os.path.isdir(directory) or not os.listdir(directory)  # no file was made


def test_a_deferred_length_is_fixed_once(chunky, store, service):
    upload = service.create(owner="u1", length=None, max_bytes=None)
    assert store.get(upload.upload_id).size == UNKNOWN_LENGTH
    with pytest.raises(exc.UploadIncomplete):  # no completion before the length is known
        service.complete(owner="u1", upload_id=upload.upload_id, checksum="0" * 32)
    with pytest.raises(exc.TooLarge):
        service.declare_length(owner="u1", upload_id=upload.upload_id, length=11, max_bytes=10)
    declared = service.declare_length(
        owner="u1", upload_id=upload.upload_id, length=5, max_bytes=None
    )
    assert declared.size == 5 and store.get(upload.upload_id).size == 5
    # The same length again is harmless; another never replaces it.
    service.declare_length(owner="u1", upload_id=upload.upload_id, length=5, max_bytes=None)
    with pytest.raises(exc.TotalChanged):
        service.declare_length(owner="u1", upload_id=upload.upload_id, length=6, max_bytes=None)
    assert store.get(upload.upload_id).size == 5
    assert not store.is_locked(upload.upload_id)  # every path released the lock
    append(service, upload.upload_id, b"abcde", 0, 5)


def test_a_declared_length_counts_against_the_bytes_quota(chunky, store, service):
    quota = Quota(max_uploads=None, max_bytes=100)
    upload = service.create(owner="u1", length=None, max_bytes=None, quota=quota)
    with pytest.raises(exc.QuotaExceeded):
        service.declare_length(
            owner="u1", upload_id=upload.upload_id, length=101, max_bytes=None, quota=quota
        )
    assert store.get(upload.upload_id).size == UNKNOWN_LENGTH


def test_termination_removes_record_file_and_quota(chunky, store, service):
    quota = Quota(max_uploads=1, max_bytes=None)
    upload = service.create(owner="u1", length=10, max_bytes=None, quota=quota)
    append(service, upload.upload_id, b"01234", 0, 10)
    service.terminate(owner="u1", upload_id=upload.upload_id)
    assert store.get(upload.upload_id) is None
    assert not os.path.exists(chunk_file(chunky, upload.upload_id))
    assert store.expiries.score(upload.upload_id) is None  # nothing to sweep
    assert not store.is_locked(upload.upload_id)
    with pytest.raises(exc.UploadNotFound):
        service.status(owner="u1", upload_id=upload.upload_id)
    service.create(owner="u1", length=10, max_bytes=None, quota=quota)  # the quota was released


def test_termination_refuses_others_locked_and_finished_uploads(chunky, store, service):
    upload = service.create(owner="u1", length=0, max_bytes=None)
    with pytest.raises(exc.UploadNotFound):
        service.terminate(owner="someone else", upload_id=upload.upload_id)
    token, _ = service.context.lock("u1", upload.upload_id)
    with pytest.raises(exc.UploadLocked):
        service.terminate(owner="u1", upload_id=upload.upload_id)
    store.release(upload.upload_id, token)
    service.complete(owner="u1", upload_id=upload.upload_id, checksum=hashlib.md5().hexdigest())
    with pytest.raises(exc.AlreadyComplete):
        service.terminate(owner="u1", upload_id=upload.upload_id)
    assert store.get(upload.upload_id).status == PROCESSING
    assert os.path.exists(chunk_file(chunky, upload.upload_id))


def test_no_chunk_before_the_length_is_declared(chunky, store, service):
    upload = service.create(owner="u1", length=None, max_bytes=None)
    with pytest.raises(exc.BadContentRange) as refused:
        append(service, upload.upload_id, b"abc", 0, 3)
    assert refused.value.code == "length_unknown"
    assert refused.value.detail == "This upload's length is not declared yet."
    assert not store.is_locked(upload.upload_id)
    assert store.get(upload.upload_id).offset == 0


def test_lengths_at_the_limits(chunky, store, service):
    """Negative is refused with the reason; zero and exactly the limit are lengths."""
    for call in (
        lambda: service.create(owner="u1", length=-1, max_bytes=None),
        lambda: service.declare_length(
            owner="u1", upload_id=deferred.upload_id, length=-1, max_bytes=None
        ),
    ):
        deferred = service.create(owner="u1", length=None, max_bytes=None)
        with pytest.raises(exc.BadContentRange) as refused:
            call()
        assert refused.value.detail == "A length cannot be negative."
    upload = service.create(owner="u1", length=10, max_bytes=10)
    assert (store.get(upload.upload_id).size, store.get(upload.upload_id).filename) == (10, "")
    deferred = service.create(owner="u1", length=None, max_bytes=None)
    assert (
        service.declare_length(
            owner="u1", upload_id=deferred.upload_id, length=10, max_bytes=10
        ).size
        == 10
    )
    empty = service.create(owner="u1", length=None, max_bytes=None)
    declared = service.declare_length(
        owner="u1", upload_id=empty.upload_id, length=0, max_bytes=None
    )
    assert declared.size == 0 == store.get(empty.upload_id).size
    with pytest.raises(exc.TooLarge) as refused:
        service.declare_length(owner="u1", upload_id=deferred.upload_id, length=11, max_bytes=10)
    assert (refused.value.size, refused.value.limit) == (11, 10)
    with pytest.raises(exc.TotalChanged) as changed:
        service.declare_length(owner="u1", upload_id=deferred.upload_id, length=9, max_bytes=None)
    assert (changed.value.declared, changed.value.total) == (9, 10)
    assert not store.is_locked(deferred.upload_id)


def test_creation_counts_against_the_quota(chunky, service):
    quota = Quota(max_uploads=1, max_bytes=None)
    service.create(owner="u1", length=10, max_bytes=None, quota=quota)
    with pytest.raises(exc.TooManyUploads):
        service.create(owner="u1", length=10, max_bytes=None, quota=quota)


def test_a_length_below_the_bytes_received_is_refused(chunky, store, service):
    """Not reachable through the rules today (no byte before the length), but a record
    that holds bytes and no length is refused a length shorter than them."""
    upload = service.create(owner="u1", length=None, max_bytes=None)
    store.redis.hset(store.record_key(upload.upload_id), "offset", 5)
    with pytest.raises(exc.LengthMismatch) as refused:
        service.declare_length(owner="u1", upload_id=upload.upload_id, length=4, max_bytes=None)
    assert (refused.value.announced, refused.value.received) == (4, 5)
    assert "5 bytes have been received; the length cannot be 4." in refused.value.detail
    assert not store.is_locked(upload.upload_id)
    declared = service.declare_length(
        owner="u1", upload_id=upload.upload_id, length=5, max_bytes=None
    )
    assert declared.size == 5


@pytest.mark.parametrize(("answer", "error"), [("lost", exc.LockLost), ("set", exc.UploadLocked)])
def test_a_length_the_store_did_not_set_says_why(
    chunky, store, service, monkeypatch, answer, error
):
    upload = service.create(owner="u1", length=None, max_bytes=None)
    monkeypatch.setattr(store, "set_length", lambda *args: answer)
    with pytest.raises(error) as refused:
        service.declare_length(owner="u1", upload_id=upload.upload_id, length=5, max_bytes=None)
    assert type(refused.value) is error
    if answer == "set":
        assert refused.value.detail == "The upload moved while its length was declared."


@pytest.mark.parametrize(
    ("answer", "error"),
    [("lost", exc.LockLost), ("missing", exc.UploadNotFound), (PROCESSING, exc.AlreadyComplete)],
)
def test_a_termination_the_store_refused_says_why(
    chunky, store, service, monkeypatch, answer, error
):
    upload = service.create(owner="u1", length=10, max_bytes=None)
    monkeypatch.setattr(store, "terminate", lambda *args: answer)
    with pytest.raises(error) as refused:
        service.terminate(owner="u1", upload_id=upload.upload_id)
    assert type(refused.value) is error
    if error is exc.AlreadyComplete:
        assert refused.value.status == PROCESSING
    assert os.path.exists(chunk_file(chunky, upload.upload_id))  # the bytes stay


def test_a_refused_termination_releases_the_lock(chunky, store, service):
    upload = service.create(owner="u1", length=0, max_bytes=None)
    service.complete(owner="u1", upload_id=upload.upload_id, checksum=hashlib.md5().hexdigest())
    with pytest.raises(exc.AlreadyComplete):
        service.terminate(owner="u1", upload_id=upload.upload_id)
    assert not store.is_locked(upload.upload_id)


def body(service, upload_id: str, data: bytes, byte_range: ByteRange | None):
    session = service.start_chunk(
        owner="u1",
        upload_id=upload_id,
        byte_range=byte_range,
        length=None if byte_range is None else len(data),  # None: a multipart body's
        max_bytes=None,
    )
    try:
        session.write(data)
        return session.finish()
    except BaseException:
        session.abort()
        raise


def test_a_body_without_a_range_is_the_whole_file_from_its_start(chunky, store, service):
    """No Content-Range on an existing upload: the body is bytes 0 to size - 1, exactly."""
    for data, received in ((b"0123456789!", None), (b"012345678", 9)):
        upload = service.create(owner="u1", length=10, max_bytes=None)
        with pytest.raises(exc.LengthMismatch) as refused:
            body(service, upload.upload_id, data, None)
        assert (refused.value.announced, refused.value.received) == (10, received)
        assert store.get(upload.upload_id).offset == 0
    upload = service.create(owner="u1", length=10, max_bytes=None)
    assert body(service, upload.upload_id, b"0123456789", None).offset == 10
    assert not store.is_locked(upload.upload_id)


def test_a_body_without_a_range_after_some_bytes_is_refused(chunky, store, service):
    upload = service.create(owner="u1", length=10, max_bytes=None)
    append(service, upload.upload_id, b"01234", 0, 10)
    with pytest.raises(exc.OffsetMismatch) as refused:
        body(service, upload.upload_id, b"56789", None)
    assert (refused.value.expected, refused.value.provided) == (5, 0)
    with pytest.raises(exc.TotalChanged) as changed:
        body(service, upload.upload_id, b"56789", ByteRange(5, 9, 11))
    assert (changed.value.declared, changed.value.total) == (11, 10)
    assert not store.is_locked(upload.upload_id)
