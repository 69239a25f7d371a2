"""The core's per-request chunk digests, extra whole-file digests and appends before the
length is declared (what tus and the IETF draft need), on fakeredis and the real Redis."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest

from chunky_redis.core import errors as exc
from chunky_redis.core.checksums import ALGORITHMS, ChunkDigest, incremental_available
from chunky_redis.core.context import Policy
from chunky_redis.core.filesystem import FileSystemChunkStorage
from chunky_redis.core.http import ByteRange
from chunky_redis.core.store import PROCESSING, Upload
from chunky_redis.core.uploads import UploadService

pytestmark = pytest.mark.django_db

DATA = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def completed():
    return []


def new_service(chunky, store, completed) -> UploadService:
    """A service of its own, as another worker would build it: only Redis and the files are shared."""
    return UploadService(
        store=store,
        storage=FileSystemChunkStorage(chunky.CHUNKY_REDIS_UPLOAD_DIR, fsync=False),
        policy=Policy(algorithm="md5"),
        on_complete=completed.append,
    )


@pytest.fixture
def service(chunky, store, completed):
    return new_service(chunky, store, completed)


def digest(algorithm: str, data: bytes) -> ChunkDigest:
    return ChunkDigest(algorithm, hashlib.new(algorithm, data).digest())


def append(service, upload_id, data, offset, *, chunk_digest=None, **kwargs):
    session = service.start_append(
        owner="u1",
        upload_id=upload_id,
        offset=offset,
        length=kwargs.pop("length", len(data)),
        max_bytes=kwargs.pop("max_bytes", None),
        chunk_digest=chunk_digest,
        **kwargs,
    )
    try:
        session.write(data)
        return session.finish()
    except BaseException:
        session.abort()
        raise


def chunk_file(chunky, upload_id):
    return os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_chunk_whose_digest_matches_is_recorded(service, store, algorithm):
    upload = service.create(owner="u1", length=len(DATA), max_bytes=None)
    done = append(
        service, upload.upload_id, DATA[:4000], 0, chunk_digest=digest(algorithm, DATA[:4000])
    )
    assert done.offset == 4000
    assert store.get(upload.upload_id).offset == 4000


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_chunk_whose_digest_differs_is_discarded(chunky, service, store, completed, algorithm):
    upload = service.create(owner="u1", length=len(DATA), max_bytes=None, digests=("sha256",))
    append(service, upload.upload_id, DATA[:1000], 0)
    before = store.get(upload.upload_id)
    wrong = b"x" * 1000
    with pytest.raises(exc.ChunkChecksumMismatch) as caught:
        append(
            service, upload.upload_id, wrong, 1000, chunk_digest=digest(algorithm, DATA[1000:2000])
        )
    error = caught.value
    assert error.code == "chunk_checksum_mismatch"
    assert error.algorithm == algorithm
    assert error.expected == hashlib.new(algorithm, DATA[1000:2000]).digest()
    assert error.computed == hashlib.new(algorithm, wrong).digest()
    assert error.extra["expected"] == error.expected.hex()
    after = store.get(upload.upload_id)
    assert after == before  # offset, both digest states, everything
    assert not store.is_locked(upload.upload_id)
    # the bytes written past the offset are not counted; the retry overwrites them
    append(
        service, upload.upload_id, DATA[1000:], 1000, chunk_digest=digest(algorithm, DATA[1000:])
    )
    done = service.complete(owner="u1", upload_id=upload.upload_id, checksum=None)
    assert done.checksum == hashlib.md5(DATA).hexdigest()
    assert done.hexdigest("sha256") == hashlib.sha256(DATA).hexdigest()
    with open(chunk_file(chunky, upload.upload_id), "rb") as f:
        assert f.read() == DATA
    assert [u.upload_id for u in completed] == [upload.upload_id]


def test_a_new_upload_whose_first_chunk_digest_differs_leaves_nothing(chunky, service, store):
    session = service.start_chunk(
        owner="u1",
        upload_id=None,
        byte_range=ByteRange(0, 99, 100),
        length=100,
        max_bytes=None,
        chunk_digest=digest("sha1", b"y" * 100),
    )
    session.write(b"z" * 100)
    with pytest.raises(exc.ChunkChecksumMismatch):
        session.finish()
    session.abort()
    assert store.get(session.upload_id) is None
    assert not os.path.exists(chunk_file(chunky, session.upload_id))


def test_the_chunky_dialect_path_checks_a_chunk_digest_too(service, store):
    upload = service.create(owner="u1", length=20, max_bytes=None)
    session = service.start_chunk(
        owner="u1",
        upload_id=upload.upload_id,
        byte_range=ByteRange(0, 9, 20),
        length=10,
        max_bytes=None,
        chunk_digest=digest("md5", b"a" * 10),
    )
    session.write(b"b" * 10)
    with pytest.raises(exc.ChunkChecksumMismatch):
        session.finish()
    session.abort()
    assert store.get(upload.upload_id).offset == 0


def test_an_unknown_algorithm_is_refused_before_anything(service, store):
    upload = service.create(owner="u1", length=10, max_bytes=None)
    with pytest.raises(exc.UnsupportedDigest) as caught:
        append(service, upload.upload_id, b"0" * 10, 0, chunk_digest=ChunkDigest("crc32", b"1234"))
    assert caught.value.code == "unsupported_digest"
    assert not store.is_locked(upload.upload_id)
    with pytest.raises(exc.UnsupportedDigest):
        service.create(owner="u1", length=10, max_bytes=None, digests=("sha3",))


def test_extra_digests_go_on_across_workers(chunky, store, completed):
    first = new_service(chunky, store, completed)
    upload = first.create(
        owner="u1", length=len(DATA), max_bytes=None, digests=("sha256", "sha512")
    )
    assert set(store.get(upload.upload_id).digest_states) == {"sha256", "sha512"}
    for start in range(0, len(DATA), 3000):
        worker = new_service(chunky, store, completed)  # each chunk on "another worker"
        append(worker, upload.upload_id, DATA[start : start + 3000], start)
    record = store.get(upload.upload_id)
    assert record.hexdigest("sha256") == hashlib.sha256(DATA).hexdigest()
    assert record.hexdigest("sha512") == hashlib.sha512(DATA).hexdigest()
    assert record.hexdigest("md5") == hashlib.md5(DATA).hexdigest()
    assert record.hexdigest("sha1") is None  # not asked for
    assert record.digests == ("md5", "sha256", "sha512")
    done = first.complete(owner="u1", upload_id=upload.upload_id, checksum=None)
    assert done.hexdigest("sha256") == hashlib.sha256(DATA).hexdigest()
    # the record still holds each state for finalization to read, without the file
    os.unlink(chunk_file(chunky, upload.upload_id))
    assert store.get(upload.upload_id).hexdigest("sha512") == hashlib.sha512(DATA).hexdigest()


def test_extra_digests_from_a_first_chunk(service, store):
    session = service.start_chunk(
        owner="u1",
        upload_id=None,
        byte_range=ByteRange(0, 99, 200),
        length=100,
        max_bytes=None,
        digests=("sha1",),
    )
    session.write(DATA[:100])
    upload = session.finish()
    append(service, upload.upload_id, DATA[100:200], 100)
    assert store.get(upload.upload_id).hexdigest("sha1") == hashlib.sha1(DATA[:200]).hexdigest()


def test_appending_before_the_length_is_declared(service, store, completed):
    upload = service.create(owner="u1", length=None, max_bytes=100)
    with pytest.raises(exc.BadContentRange) as caught:
        append(service, upload.upload_id, b"a" * 10, 0, max_bytes=100)
    assert caught.value.code == "length_unknown"
    assert not store.is_locked(upload.upload_id)
    append(service, upload.upload_id, b"a" * 60, 0, max_bytes=100, length_unknown_ok=True)
    assert store.get(upload.upload_id).offset == 60
    # bounded by max_bytes: declared (Content-Length) or streamed past it
    with pytest.raises(exc.TooLarge):
        append(service, upload.upload_id, b"b" * 41, 60, max_bytes=100, length_unknown_ok=True)
    with pytest.raises(exc.TooLarge):
        append(
            service,
            upload.upload_id,
            b"b" * 41,
            60,
            max_bytes=100,
            length=None,
            length_unknown_ok=True,
        )
    assert store.get(upload.upload_id).offset == 60
    append(
        service, upload.upload_id, b"b" * 40, 60, max_bytes=100, length=None, length_unknown_ok=True
    )
    with pytest.raises(exc.UploadIncomplete):
        service.complete(owner="u1", upload_id=upload.upload_id, checksum=None)
    service.declare_length(owner="u1", upload_id=upload.upload_id, length=100, max_bytes=100)
    done = service.complete(owner="u1", upload_id=upload.upload_id, checksum=None)
    assert done.checksum == hashlib.md5(b"a" * 60 + b"b" * 40).hexdigest()
    assert len(completed) == 1


def test_an_append_at_another_offset_or_past_the_length(service, store):
    upload = service.create(owner="u1", length=10, max_bytes=None)
    append(service, upload.upload_id, b"0123", 0)
    with pytest.raises(exc.OffsetMismatch) as caught:
        append(service, upload.upload_id, b"4567", 3)
    assert (caught.value.expected, caught.value.provided) == (4, 3)
    with pytest.raises(exc.LengthMismatch):
        append(service, upload.upload_id, b"456789A", 4)
    with pytest.raises(exc.TooLarge):  # no Content-Length: the bytes run past the length
        append(service, upload.upload_id, b"456789A", 4, length=None)
    assert store.get(upload.upload_id).offset == 4
    assert not store.is_locked(upload.upload_id)
    empty = append(service, upload.upload_id, b"", 4)
    assert empty.offset == 4
    append(service, upload.upload_id, b"456789", 4, length=None)
    assert store.get(upload.upload_id).offset == 10


def test_a_short_body_is_kept_as_far_as_it_came_only_when_asked(service, store):
    upload = service.create(owner="u1", length=10, max_bytes=None)
    with pytest.raises(exc.LengthMismatch):
        append(service, upload.upload_id, b"0123", 0, length=6)
    assert store.get(upload.upload_id).offset == 0
    done = append(service, upload.upload_id, b"0123", 0, length=6, keep_partial=True)
    assert done.offset == 4 and store.get(upload.upload_id).offset == 4
    with pytest.raises(exc.TooLarge):  # never more than announced
        append(service, upload.upload_id, b"4567", 4, length=3, keep_partial=True)
    with pytest.raises(exc.ChunkChecksumMismatch):  # a digest covers the whole announced body
        append(
            service,
            upload.upload_id,
            b"45",
            4,
            length=6,
            keep_partial=True,
            chunk_digest=digest("sha1", b"456789"),
        )
    assert store.get(upload.upload_id).offset == 4


# -- concatenation (tus): the parts' bytes are written by the worker ----------------------------


def complete_part(service, data: bytes) -> str:
    upload = service.create(owner="u1", length=len(data), max_bytes=None)
    if data:
        append(service, upload.upload_id, data, 0)
    return upload.upload_id


def test_a_concatenation_is_handed_off_at_once_and_assembled_by_the_worker(
    chunky, service, store, completed, signal_log
):
    from chunky_redis.processing import jobs

    parts = [complete_part(service, d) for d in (b"alpha-", b"", b"beta")]
    final = service.concatenate(
        owner="u1", part_ids=[*parts, parts[0]], max_bytes=None, filename="ab.txt"
    )
    assert [u.upload_id for u in completed] == [final.upload_id]
    record = store.get(final.upload_id)
    assert (record.status, record.offset, record.size, record.checksum) == (
        PROCESSING,
        16,
        16,
        "",
    )
    # a worker that died half-way left a part-written file: the next one starts over
    with open(chunk_file(chunky, final.upload_id), "wb") as f:
        f.write(b"alpha-be")
    outcome = jobs.finalize(final.upload_id)
    assert outcome.status == "complete", outcome.reason
    data = b"alpha-beta" + b"alpha-"
    (done,) = [kw for name, kw in signal_log if name == "upload_completed"]
    assert done["checksum"] == hashlib.md5(data).hexdigest()
    with open(os.path.join(chunky.MEDIA_ROOT, done["final_name"]), "rb") as f:
        assert f.read() == data
    assert jobs.finalize(final.upload_id).status == "skipped"
    for part in parts:
        assert store.get(part) is None and not os.path.exists(chunk_file(chunky, part))


def test_a_concatenation_whose_part_vanished_fails(chunky, service, store):
    from chunky_redis.processing import jobs

    parts = [complete_part(service, d) for d in (b"one", b"two")]
    final = service.concatenate(owner="u1", part_ids=parts, max_bytes=None)
    service.terminate(owner="u1", upload_id=parts[1])
    outcome = jobs.finalize(final.upload_id)
    assert outcome.status == "failed" and "missing" in outcome.reason


def test_a_concatenation_refuses_parts_it_cannot_use(service, store, completed):
    done = complete_part(service, b"abc")
    unfinished = service.create(owner="u1", length=5, max_bytes=None).upload_id
    with pytest.raises(exc.UploadIncomplete):
        service.concatenate(owner="u1", part_ids=[done, unfinished], max_bytes=None)
    with pytest.raises(exc.UploadNotFound):
        service.concatenate(owner="u2", part_ids=[done], max_bytes=None)
    with pytest.raises(exc.BadConcatenation):
        service.concatenate(owner="u1", part_ids=[], max_bytes=None)
    with pytest.raises(exc.TooLarge):
        service.concatenate(owner="u1", part_ids=[done, done], max_bytes=5)
    assert completed == []


def test_a_concatenation_whose_hand_off_failed_is_handed_off_again(service, store, completed):
    parts = [complete_part(service, b"xy")]

    def down(upload):
        raise ConnectionError("the broker is down")

    service.on_complete = down
    with pytest.raises(exc.QueueUnavailable):
        service.concatenate(owner="u1", part_ids=parts, max_bytes=None)
    (waiting,) = [
        u
        for u in (
            store.get(k.decode().split("{")[1].split("}")[0])
            for k in store.redis.scan_iter(match=f"{store.prefix}:*:upload")
        )
        if u.extra.get("concat_parts")
    ]
    assert waiting.status == "uploading"
    service.on_complete = completed.append
    again = service.complete(owner="u1", upload_id=waiting.upload_id, checksum=None)
    assert again.status == PROCESSING and [u.upload_id for u in completed] == [waiting.upload_id]
    # its checksum stays for the worker to compute from the parts
    assert store.get(waiting.upload_id).checksum == ""


def test_an_unfinished_concatenation_is_handed_off_once_when_its_parts_are_complete(
    service, store, completed
):
    done = complete_part(service, b"abc")
    later = service.create(owner="u1", length=2, max_bytes=None).upload_id
    final = service.concatenate(
        owner="u1", part_ids=[done, later], max_bytes=None, unfinished_ok=True
    )
    assert final.status == "uploading" and final.size == 5 and completed == []
    assert store.get(later).extra["concat_finals"] == [final.upload_id]
    with pytest.raises(exc.ConcatenationFinal):
        append(service, final.upload_id, b"x", 0)
    assert service.finish_concatenation(owner="u1", upload_id=final.upload_id).status == "uploading"
    append(service, later, b"de", 0)
    assert completed == []
    handed = service.finish_concatenation(owner="u1", upload_id=final.upload_id)
    assert (handed.status, handed.offset, handed.size) == (PROCESSING, 5, 5)
    assert service.finish_concatenation(owner="u1", upload_id=final.upload_id).status == PROCESSING
    assert [u.upload_id for u in completed] == [final.upload_id]


def test_a_part_completed_while_the_concatenation_was_made_is_not_missed(
    service, store, completed, monkeypatch
):
    part = complete_part(service, b"abc")
    stale = store.get(part)
    stale.offset = 0  # what a request read before the part's last bytes were recorded
    real_parts = service._parts
    calls = iter([lambda owner, ids: [stale]])
    monkeypatch.setattr(service, "_parts", lambda owner, ids: next(calls, real_parts)(owner, ids))
    final = service.concatenate(owner="u1", part_ids=[part], max_bytes=None, unfinished_ok=True)
    assert final.status == PROCESSING and [u.upload_id for u in completed] == [final.upload_id]


def test_two_requests_finishing_one_concatenation_hand_it_off_once(
    service, store, completed, monkeypatch
):
    part = service.create(owner="u1", length=2, max_bytes=None).upload_id
    final = service.concatenate(owner="u1", part_ids=[part], max_bytes=None, unfinished_ok=True)
    append(service, part, b"ok", 0)
    waiting = store.get(final.upload_id)  # what both requests read
    service.finish_concatenation(owner="u1", upload_id=final.upload_id)
    real_status = service._status
    monkeypatch.setattr(
        service,
        "_status",
        lambda owner, upload_id: (
            waiting if upload_id == final.upload_id else real_status(owner, upload_id)
        ),
    )
    service.finish_concatenation(owner="u1", upload_id=final.upload_id)
    assert [u.upload_id for u in completed] == [final.upload_id]


# -- completion without the client's digest (tus): the server's own is recorded ---------------


def test_a_completion_without_a_checksum_records_the_streamed_digest_unread(
    service, store, completed, monkeypatch
):
    upload = service.create(owner="u1", length=len(DATA), max_bytes=None)
    append(service, upload.upload_id, DATA, 0)

    def no_read(*args):
        raise AssertionError("the streaming state has the digest: no byte is read again")

    monkeypatch.setattr(service.storage, "digest", no_read)
    done = service.complete(owner="u1", upload_id=upload.upload_id, checksum=None)
    assert done.status == PROCESSING
    assert store.get(upload.upload_id).checksum == hashlib.md5(DATA).hexdigest()


def test_a_completion_without_a_checksum_nor_a_state_digests_the_upload_s_bytes(
    chunky, service, store, completed, monkeypatch
):
    """No streaming state (libcrypto missing): the stored bytes are read, up to the length
    only (a chunk that failed may have left bytes past it)."""
    monkeypatch.setattr("chunky_redis.core.session.incremental_available", lambda a: False)
    upload = service.create(owner="u1", length=len(DATA), max_bytes=None)
    assert append(service, upload.upload_id, DATA, 0).hash_state == b""
    with open(chunk_file(chunky, upload.upload_id), "ab") as f:
        f.write(b"left by a chunk that failed")
    service.complete(owner="u1", upload_id=upload.upload_id, checksum=None)
    assert store.get(upload.upload_id).checksum == hashlib.md5(DATA).hexdigest()
    assert [u.upload_id for u in completed] == [upload.upload_id]


def test_completing_again_without_a_checksum_queues_a_lost_hand_off_again(
    service, store, completed
):
    """tus completes without a digest: its retry (the first hand-off long ago) queues again."""
    upload = service.create(owner="u1", length=len(DATA), max_bytes=None)
    append(service, upload.upload_id, DATA, 0)
    service.complete(owner="u1", upload_id=upload.upload_id, checksum=None)
    service.policy.requeue_after_ms = -1_000  # the first hand-off counts as long ago
    again = service.complete(owner="u1", upload_id=upload.upload_id, checksum=None)
    assert again.checksum == hashlib.md5(DATA).hexdigest()
    assert [u.upload_id for u in completed] == [upload.upload_id] * 2


def test_a_state_missing_past_byte_0_is_not_started_again_mid_file(
    chunky, service, store, completed, monkeypatch
):
    """A first chunk recorded without a streaming state (libcrypto missing then): a later
    chunk, with libcrypto back, must not start a state at its own offset, which would
    digest only the bytes from there; the completion reads the whole file instead."""
    monkeypatch.setattr("chunky_redis.core.session.incremental_available", lambda a: False)
    upload = service.create(owner="u1", length=len(DATA), max_bytes=None, digests=("sha256",))
    append(service, upload.upload_id, DATA[:1000], 0)
    monkeypatch.setattr("chunky_redis.core.session.incremental_available", incremental_available)
    done = append(service, upload.upload_id, DATA[1000:], 1000)
    assert done.hash_state == b"" and done.hexdigest("sha256") is None
    service.complete(owner="u1", upload_id=upload.upload_id, checksum=None)
    assert store.get(upload.upload_id).checksum == hashlib.md5(DATA).hexdigest()


def test_a_record_naming_its_own_algorithm_among_its_extra_digests_keeps_the_others(
    chunky, service, store
):
    """The record's own algorithm has its state in hash_state: listed among the extra digests
    too (a record not written by create(), which leaves it out), it is passed over, and the
    extras after it still go on."""
    now = store.now()
    upload = Upload(
        upload_id=uuid.uuid4().hex,
        owner="u1",
        size=len(DATA),
        created=now,
        expires=now + 60_000,
        algorithm="md5",
        digest_states={"md5": b"", "sha256": b""},
    )
    store.create(upload)
    path = chunk_file(chunky, upload.upload_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()  # its file, as create() makes it
    append(service, upload.upload_id, DATA, 0)
    record = store.get(upload.upload_id)
    assert record.hexdigest("md5") == hashlib.md5(DATA).hexdigest()
    assert record.hexdigest("sha256") == hashlib.sha256(DATA).hexdigest()
