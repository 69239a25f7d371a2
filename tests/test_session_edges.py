"""Edges of the upload rules that `make mutate` found unguarded, on the Django-free
service (chunky_redis.core.uploads / session) as an embedding application would call it."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from chunky_redis import exceptions as exc
from chunky_redis.core import errors as core_errors
from chunky_redis.core.checksums import ChunkDigest
from chunky_redis.core.context import raise_for, require_uploading
from chunky_redis.core.http import ByteRange
from chunky_redis.core.observer import UploadObserver
from chunky_redis.core.session import clean_checksum
from chunky_redis.core.store import COMPLETE, FAILED, PROCESSING, UPLOADING, Upload
from chunky_redis.core.uploads import ChunkSession, UploadService
from chunky_redis.runtime import get_service


@pytest.fixture
def service(chunky) -> UploadService:
    queued: list[str] = []
    service = get_service()
    service.on_complete = lambda upload: queued.append(upload.upload_id)
    service.queued = queued  # type: ignore[attr-defined]
    return service


def whole(service: UploadService, data: bytes, max_bytes: int | None = None):
    return service.start_chunk(
        owner="", upload_id=None, byte_range=None, length=None, max_bytes=max_bytes
    )


def test_a_whole_file_in_one_call_keeps_its_attributes(service):
    data = os.urandom(3000)
    session = whole(service, data)
    session.write(data)
    upload = session.finish_and_complete(hashlib.md5(data).hexdigest(), extra={"album": "7"})
    stored = service.store.get(upload.upload_id)
    assert (stored.status, stored.filename, stored.extra) == (PROCESSING, "", {"album": "7"})
    assert service.queued == [upload.upload_id]


def test_a_whole_file_names_its_algorithm_when_the_checksum_is_missing(service):
    session = whole(service, b"abc")
    session.write(b"abc")
    with pytest.raises(exc.MissingChecksum) as missing:
        session.finish_and_complete("")
    assert "md5" in missing.value.detail
    session.abort()


def test_a_whole_file_whose_queueing_fails_keeps_its_bytes(service, chunky):
    """Recorded, then the queue refuses: the client may complete again; nothing is deleted."""

    def refuse(upload):
        raise ConnectionError("broker down")

    service.on_complete = refuse
    data = os.urandom(2000)
    session = whole(service, data)
    session.write(data)
    with pytest.raises(exc.QueueUnavailable):
        try:
            session.finish_and_complete(hashlib.md5(data).hexdigest())
        except exc.ChunkyError:
            session.abort()  # what the view does with any error
            raise
    upload_id = session.upload_id
    assert service.store.get(upload_id).status == UPLOADING
    assert session.upload.status == UPLOADING
    path = Path(chunky.CHUNKY_REDIS_UPLOAD_DIR) / f"{upload_id}.part"
    assert path.read_bytes() == data
    service.on_complete = lambda upload: None
    again = service.complete(owner="", upload_id=upload_id, checksum=hashlib.md5(data).hexdigest())
    assert again.status == PROCESSING


def test_overflow_errors_say_which_limit(service):
    data = os.urandom(200)
    session = whole(service, data, max_bytes=100)
    with pytest.raises(exc.TooLarge) as too_large:
        session.write(data)
    assert too_large.value.detail == "The file exceeds the size limit."
    assert (too_large.value.size, too_large.value.limit) == (None, 100)
    session.abort()

    session = service.start_chunk(
        owner="", upload_id=None, byte_range=ByteRange(0, 99, 100), length=None, max_bytes=None
    )
    with pytest.raises(exc.LengthMismatch) as mismatch:
        session.write(data)
    assert "100 bytes" in mismatch.value.detail
    assert (mismatch.value.announced, mismatch.value.received) == (100, None)
    session.abort()


def test_checksums_are_cleaned_and_their_errors_name_the_algorithm():
    assert clean_checksum("  ABCdef0123 ", "md5") == "abcdef0123"
    for missing in ("", "   ", None):
        with pytest.raises(exc.MissingChecksum) as error:
            clean_checksum(missing, "sha256")
        assert "sha256" in error.value.detail
    with pytest.raises(exc.ChecksumMismatch) as error:
        clean_checksum("abcxyz", "sha256")
    assert error.value.code == "bad_checksum"
    assert "sha256" in error.value.detail and "hexadecimal" in error.value.detail


def test_completion_names_the_algorithm_of_a_missing_checksum(service):
    data = os.urandom(100)
    session = whole(service, data)
    session.write(data)
    upload = session.finish()
    with pytest.raises(exc.MissingChecksum) as error:
        service.complete(owner="", upload_id=upload.upload_id, checksum="")
    assert "md5" in error.value.detail


def test_a_completion_that_lost_its_lock_says_so(service, monkeypatch):
    """The lock lapsed between taking it and marking the upload: 409 lock_lost, not
    already_complete, and the upload is still there to complete."""
    data = os.urandom(100)
    session = whole(service, data)
    session.write(data)
    upload = session.finish()
    monkeypatch.setattr(service.store, "mark_processing", lambda *args: "lost")
    with pytest.raises(exc.LockLost):
        service.complete(
            owner="", upload_id=upload.upload_id, checksum=hashlib.md5(data).hexdigest()
        )
    assert service.store.get(upload.upload_id).status == UPLOADING


def processing_upload(service, data: bytes):
    session = whole(service, data)
    session.write(data)
    return session.finish_and_complete(hashlib.md5(data).hexdigest())


def test_completing_again_says_the_upload_is_processing(service):
    """A different checksum, or the same one while the first hand-off is fresh:
    already_complete, with the status the client should wait for."""
    data = os.urandom(100)
    upload = processing_upload(service, data)
    for checksum in (hashlib.md5(b"other").hexdigest(), hashlib.md5(data).hexdigest()):
        with pytest.raises(exc.AlreadyComplete) as error:
            service.complete(owner="", upload_id=upload.upload_id, checksum=checksum)
        assert error.value.status == PROCESSING
    assert service.queued == [upload.upload_id]


def test_completing_again_without_a_checksum_names_the_algorithm(service):
    upload = processing_upload(service, os.urandom(100))
    with pytest.raises(exc.MissingChecksum) as error:
        service.complete(owner="", upload_id=upload.upload_id, checksum="")
    assert "md5" in error.value.detail


def test_a_wrong_checksum_names_the_algorithm(service):
    data = os.urandom(100)
    session = whole(service, data)
    session.write(data)
    upload = session.finish()
    with pytest.raises(exc.ChecksumMismatch) as error:
        service.complete(owner="", upload_id=upload.upload_id, checksum="0" * 32)
    assert error.value.algorithm == "md5" and "md5" in error.value.detail


def test_a_completion_returns_when_it_was_queued(service):
    data = os.urandom(100)
    session = whole(service, data)
    session.write(data)
    upload = session.finish()
    done = service.complete(
        owner="", upload_id=upload.upload_id, checksum=hashlib.md5(data).hexdigest()
    )
    assert done.queued == service.store.get(upload.upload_id).queued > 0


def test_an_upload_tells_the_digests_of_its_bytes_so_far():
    from chunky_redis.core.checksums import ResumableHash
    from chunky_redis.core.store import Upload

    data = os.urandom(100)
    states = {}
    for algorithm in ("md5", "sha1"):
        hasher = ResumableHash(algorithm)
        hasher.update(data)
        states[algorithm] = hasher.serialize()
    upload = Upload(
        upload_id="x",
        algorithm="md5",
        hash_state=states["md5"],
        digest_states={"sha1": states["sha1"]},
    )
    assert upload.hexdigest("md5") == hashlib.md5(data).hexdigest()
    assert upload.hexdigest("sha1") == hashlib.sha1(data).hexdigest()
    assert upload.hexdigest("sha256") is None
    assert Upload(upload_id="y").hexdigest("md5") is None


def test_a_late_store_answer_is_told_apart_from_an_unknown_one():
    with pytest.raises(exc.StoreUnavailable) as late:
        raise_for("late")
    assert late.value.detail == "Redis answered too late; try again."
    with pytest.raises(exc.StoreUnavailable) as odd:
        raise_for("busy")
    assert odd.value.detail == "Unexpected answer from the store: busy."


def test_a_failed_upload_says_why_it_takes_no_more_bytes():
    with pytest.raises(exc.UploadFailed) as failed:
        require_uploading(Upload("u1", status=FAILED, reason="virus found"))
    assert (failed.value.reason, failed.value.status) == ("virus found", FAILED)
    assert failed.value.detail == "The upload failed: virus found"


@pytest.mark.parametrize("status", [PROCESSING, COMPLETE])
def test_a_finished_upload_says_its_status(status):
    require_uploading(Upload("u1", status=UPLOADING))
    with pytest.raises(exc.AlreadyComplete) as done:
        require_uploading(Upload("u1", status=status))
    assert done.value.status == status


class RecordingObserver(UploadObserver):
    def __init__(self) -> None:
        self.chunks: list[tuple[str, int, float, bool]] = []

    def chunk_recorded(self, upload, received, seconds, created):
        self.chunks.append((upload.upload_id, received, seconds, created))


def observed_by(service: UploadService, observer: UploadObserver) -> UploadService:
    """The fixture's service (same store and storage) with an observer."""
    return UploadService(
        store=service.store,
        storage=service.storage,
        policy=service.policy,
        on_complete=lambda upload: None,
        observer=observer,
    )


def test_a_whole_file_in_one_call_is_observed_as_a_created_chunk(service):
    observer = RecordingObserver()
    observed = observed_by(service, observer)
    data = os.urandom(3000)
    began = time.monotonic()
    session = whole(observed, data)
    session.write(data)
    upload = session.finish_and_complete(hashlib.md5(data).hexdigest())
    took = time.monotonic() - began
    [(upload_id, received, seconds, created)] = observer.chunks
    assert (upload_id, received, created) == (upload.upload_id, 3000, True)
    assert created is True
    assert 0 <= seconds <= took  # from the chunk's start to its record


def test_chunks_are_observed_with_their_upload_and_whether_they_created_it(service):
    observer = RecordingObserver()
    observed = observed_by(service, observer)
    upload_id = None
    for start in (0, 4):
        session = observed.start_chunk(
            owner="",
            upload_id=upload_id,
            byte_range=ByteRange(start, start + 3, 8),
            length=4,
            max_bytes=None,
        )
        session.write(b"abcd")
        upload_id = session.finish().upload_id
    assert [(u, n, created) for u, n, _, created in observer.chunks] == [
        (upload_id, 4, True),
        (upload_id, 4, False),
    ]


def a_second_chunk_in_flight(service) -> tuple[str, ChunkSession]:
    """An upload with its first 4 bytes, and a session writing the next 4 (lock held)."""
    session = service.start_chunk(
        owner="", upload_id=None, byte_range=ByteRange(0, 3, 8), length=4, max_bytes=None
    )
    session.write(b"abcd")
    upload_id = session.finish().upload_id
    session = service.start_chunk(
        owner="", upload_id=upload_id, byte_range=ByteRange(4, 7, 8), length=4, max_bytes=None
    )
    session.write(b"efgh")
    return upload_id, session


def test_a_chunk_whose_lock_lapsed_while_it_was_written_is_not_recorded(service):
    upload_id, session = a_second_chunk_in_flight(service)
    store = service.store
    store.redis.delete(store.lock_key(upload_id))  # lapsed; no one else took it yet
    with pytest.raises(exc.LockLost):
        session.finish()
    session.abort()
    assert store.get(upload_id).offset == 4  # type: ignore[union-attr]


def test_a_chunk_of_an_upload_that_expired_while_it_was_written_is_not_recorded(service):
    upload_id, session = a_second_chunk_in_flight(service)
    store = service.store
    store.redis.hset(store.record_key(upload_id), "expires", store.now() - 1)
    with pytest.raises(exc.UploadExpired):
        session.finish()
    session.abort()
    assert store.get(upload_id).offset == 4  # type: ignore[union-attr]


def raw_body(service: UploadService, length: int, **kw):
    """A raw body of ``length`` bytes without Content-Range, as the views start it."""
    return service.start_chunk(
        owner="", upload_id=None, byte_range=None, length=length, max_bytes=None, **kw
    )


def test_a_one_byte_body_without_a_range_is_a_whole_one_byte_file(service):
    session = raw_body(service, 1)
    session.write(b"x")
    upload = session.finish()
    stored = service.store.get(upload.upload_id)
    assert (stored.size, stored.offset) == (1, 1)


def test_an_empty_body_without_a_range_is_no_chunk_unless_the_caller_allows_an_empty_file(
    service,
):
    with pytest.raises(exc.MissingChunk):
        raw_body(service, 0)
    session = raw_body(service, 0, empty_file_ok=True)
    upload = session.finish()
    assert (service.store.get(upload.upload_id).size, upload.offset) == (0, 0)


def test_a_first_chunk_finished_without_a_filename_has_none(service):
    session = raw_body(service, 3)
    session.write(b"abc")
    upload = session.finish()
    assert upload.filename == "" and service.store.get(upload.upload_id).filename == ""


def test_a_chunk_digest_of_an_unknown_algorithm_is_refused_before_any_lock(service):
    first = service.start_chunk(
        owner="", upload_id=None, byte_range=ByteRange(0, 2, 6), length=3, max_bytes=None
    )
    first.write(b"abc")
    upload_id = first.finish().upload_id
    unknown = ChunkDigest("crc32c", b"\x00\x00\x00\x00")
    for target, byte_range in ((None, ByteRange(0, 2, 3)), (upload_id, ByteRange(3, 5, 6))):
        with pytest.raises(core_errors.UnsupportedDigest) as refused:
            service.start_chunk(
                owner="",
                upload_id=target,
                byte_range=byte_range,
                length=3,
                max_bytes=None,
                chunk_digest=unknown,
            )
        assert refused.value.algorithm == "crc32c"
    assert not service.store.is_locked(upload_id)


def test_a_declared_size_past_the_limit_is_refused_with_both(service):
    with pytest.raises(exc.TooLarge) as too_large:
        service.start_chunk(
            owner="", upload_id=None, byte_range=ByteRange(0, 9, 200), length=10, max_bytes=100
        )
    assert (too_large.value.size, too_large.value.limit) == (200, 100)
    assert too_large.value.detail == "The file has 200 bytes; the limit is 100."


def test_a_body_length_that_is_not_its_range_s_is_refused_with_both(service):
    with pytest.raises(exc.LengthMismatch) as mismatch:
        service.start_chunk(
            owner="", upload_id=None, byte_range=ByteRange(0, 99, 200), length=60, max_bytes=None
        )
    assert (mismatch.value.announced, mismatch.value.received) == (100, 60)
    assert mismatch.value.detail == "Content-Range announces 100 bytes but the body has 60."


def test_a_chunk_s_blocks_renew_the_lock_only_once_a_third_of_it_has_passed(service, monkeypatch):
    """Writing a chunk block by block does not cost a Redis round trip per block: the lock
    is renewed only once a third of its timeout has passed since it was last checked."""
    renewals: list[str] = []
    extend = service.store.extend_lock

    def counted(upload_id: str, token: str) -> bool:
        renewals.append(upload_id)
        return extend(upload_id, token)

    monkeypatch.setattr(service.store, "extend_lock", counted)
    size = 64 * 1024 * 8
    session = service.start_chunk(
        owner="",
        upload_id=None,
        byte_range=ByteRange(0, size - 1, size),
        length=size,
        max_bytes=None,
    )
    for _ in range(8):
        session.write(os.urandom(64 * 1024))
    session.finish()
    assert renewals == []  # the lock (30 s) was checked when taken, milliseconds ago


def test_the_lock_is_renewed_once_exactly_a_third_of_its_timeout_has_passed(service, monkeypatch):
    """The renewal's threshold is a third of the lock's timeout (10 s of 30 s), to the
    millisecond: not a block before it, and at it, not a block later."""
    from types import SimpleNamespace

    from chunky_redis.core import session as session_module

    clock = [1000.0]
    monkeypatch.setattr(session_module, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    renewals: list[float] = []
    extend = service.store.extend_lock

    def counted(upload_id: str, token: str) -> bool:
        renewals.append(clock[0])
        return extend(upload_id, token)

    monkeypatch.setattr(service.store, "extend_lock", counted)
    assert service.store.lock_timeout_ms == 30_000
    session = service.start_chunk(
        owner="", upload_id=None, byte_range=ByteRange(0, 3, 4), length=4, max_bytes=None
    )
    for at in (1009.5, 1009.999, 1010.0, 1019.999):
        clock[0] = at
        session.write(b"x")
    session.finish()
    assert renewals == [1010.0]  # checked at 1000.0, then again from 1010.0


def test_an_upload_created_without_a_byte_is_observed_as_a_created_empty_chunk(service):
    observer = RecordingObserver()
    observed = observed_by(service, observer)
    began = time.monotonic()
    upload = observed.create(owner="", length=10, max_bytes=None)
    took = time.monotonic() - began
    [(upload_id, received, seconds, created)] = observer.chunks
    assert (upload_id, received, created) == (upload.upload_id, 0, True)
    assert 0 <= seconds <= took


def test_an_empty_body_for_an_existing_upload_is_no_chunk(service):
    """A multipart body (no Content-Length) that carried no byte: "no chunk", not a body
    shorter than its range; the offset stays."""
    session = service.start_chunk(
        owner="", upload_id=None, byte_range=ByteRange(0, 3, 8), length=4, max_bytes=None
    )
    session.write(b"abcd")
    upload_id = session.finish().upload_id
    session = service.start_chunk(
        owner="", upload_id=upload_id, byte_range=ByteRange(4, 7, 8), length=None, max_bytes=None
    )
    with pytest.raises(exc.MissingChunk):
        session.finish()
    session.abort()
    assert service.store.get(upload_id).offset == 4  # type: ignore[union-attr]


# -- a new upload's first chunk (UploadService._open_new, _start_new) ------------------------


def first_chunk(service: UploadService, data: bytes, **kwargs):
    return service.start_chunk(
        owner=kwargs.pop("owner", ""),
        upload_id=None,
        byte_range=kwargs.pop("byte_range", ByteRange(0, len(data) - 1, 2 * len(data))),
        length=len(data),
        max_bytes=None,
        **kwargs,
    )


def test_a_new_upload_s_first_chunk_past_byte_0_is_refused_with_both_offsets(service):
    with pytest.raises(exc.OffsetMismatch) as refused:
        first_chunk(service, b"abc", byte_range=ByteRange(5, 7, 10))
    assert (refused.value.expected, refused.value.provided) == (0, 5)
    assert refused.value.detail == "A new upload must start at byte 0."


def test_a_new_upload_whose_marker_cannot_be_set_is_a_503(service, monkeypatch):
    monkeypatch.setattr(service.store, "claim_new", lambda upload_id, token: False)
    with pytest.raises(exc.StoreUnavailable) as refused:
        first_chunk(service, b"abc")
    assert refused.value.detail == "Could not mark the new upload; try again."


def test_a_new_upload_whose_session_cannot_start_leaves_no_marker(service, monkeypatch):
    from chunky_redis.core import uploads

    claimed: list[str] = []
    claim_new = service.store.claim_new

    def claiming(upload_id: str, token: str) -> bool:
        claimed.append(upload_id)
        return claim_new(upload_id, token)

    def failing(*args, **kwargs):
        assert service.store.is_locked(claimed[0])  # the marker was set
        raise OSError("no room for the file")

    monkeypatch.setattr(service.store, "claim_new", claiming)
    monkeypatch.setattr(uploads, "ChunkSession", failing)
    with pytest.raises(OSError):
        first_chunk(service, b"abc")
    assert len(claimed) == 1 and not service.store.is_locked(claimed[0])


def test_a_new_upload_has_the_policy_s_algorithm_and_fresh_states_for_its_other_digests(
    service, monkeypatch
):
    monkeypatch.setattr(service.policy, "algorithm", "sha1")
    session = first_chunk(service, b"abc", digests=("sha1", "sha256"))
    assert session.upload.algorithm == "sha1"
    assert session.upload.digest_states == {"sha256": b""}  # the main one has its own state
    session.write(b"abc")
    upload = session.finish()
    assert upload.hexdigest("sha256") == hashlib.sha256(b"abc").hexdigest()
    assert service.store.get(upload.upload_id).algorithm == "sha1"


def test_a_new_upload_s_first_chunk_is_checked_against_its_digest(service):
    wrong = ChunkDigest("sha256", hashlib.sha256(b"abd").digest())
    session = first_chunk(service, b"abc", chunk_digest=wrong)
    session.write(b"abc")
    with pytest.raises(core_errors.ChunkChecksumMismatch):
        session.finish()


def test_a_new_upload_counts_against_its_owner_s_quota_only_when_it_has_limits(service):
    from chunky_redis.core.quotas import Quota

    def counted(quota: Quota) -> bool:
        session = first_chunk(service, b"abc", owner="q", quota=quota)
        in_flight = session.upload.upload_id in service.quotas.in_flight("q")
        session.abort()
        return in_flight

    assert counted(Quota(max_uploads=5)) is True
    assert counted(Quota()) is False  # unlimited: not even counted
