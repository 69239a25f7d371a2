"""Edges of finalization that `make mutate` found unguarded: permissions of the final
file, a leftover at the final name, a FileSystemStorage that customises saving, and
what a failure records."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage

from chunky_redis.core.checksums import ResumableHash
from chunky_redis.core.store import FAILED, PROCESSING
from chunky_redis.processing import finalize as finalize_module
from chunky_redis.processing.completion import fail_upload, finalize
from chunky_redis.processing.finalize import FinalizeBusy, Outcome
from chunky_redis.processing.handoff import temp_name_for
from chunky_redis.runtime import get_storage, get_store
from tests.test_finalize import payload, processing_upload


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_a_renamed_file_gets_the_storage_permissions(chunky, store):
    chunky.FILE_UPLOAD_PERMISSIONS = 0o604
    data = payload(1000)
    upload_id = processing_upload(store, chunky, data, md5(data))
    assert finalize(upload_id).status == "complete"
    final = os.path.join(chunky.MEDIA_ROOT, store.get(upload_id).final_name)
    assert stat.S_IMODE(os.stat(final).st_mode) == 0o604


def test_uploads_sharing_a_final_folder_both_complete(chunky, store):
    """The folder of the final name may already exist (another upload made it)."""
    chunky.CHUNKY_REDIS_FINAL_NAME_TEMPLATE = "shared/{upload_id}-{filename}"
    for n in range(2):
        data = payload(500, seed=n)
        upload_id = processing_upload(store, chunky, data, md5(data))
        assert finalize(upload_id).status == "complete"
        final = os.path.join(chunky.MEDIA_ROOT, f"shared/{upload_id}-a.txt")
        with open(final, "rb") as f:
            assert f.read() == data


class CountingStorage(FileSystemStorage):
    """A FileSystemStorage that customises saving: it must be saved through, not renamed to."""

    saved: list[tuple[str, str]] = []

    def _save(self, name, content):
        CountingStorage.saved.append((name, content.name))
        return super()._save(name, content)


def test_a_storage_with_its_own_save_is_saved_through_and_replaces_leftovers(chunky, store):
    chunky.CHUNKY_REDIS_FINAL_STORAGE = f"{__name__}.CountingStorage"
    CountingStorage.saved = []
    data = payload(3000)
    upload_id = processing_upload(store, chunky, data, md5(data))
    name = f"chunky_redis/{upload_id}/a.txt"
    temp = temp_name_for(name)
    folder = os.path.join(chunky.MEDIA_ROOT, os.path.dirname(name))
    os.makedirs(folder)
    for leftover in (name, temp):  # half files, left by workers that died saving them
        with open(os.path.join(chunky.MEDIA_ROOT, leftover), "wb") as f:
            f.write(data[:1000])
    assert finalize(upload_id).status == "complete"
    # Saved through the storage once, under the temporary name (the content carries it),
    # which replaced the dead attempt's file there; then renamed over the final name.
    assert CountingStorage.saved == [(temp, os.path.basename(temp))]
    assert store.get(upload_id).final_name == name
    with open(os.path.join(chunky.MEDIA_ROOT, name), "rb") as f:
        assert f.read() == data
    assert os.listdir(folder) == ["a.txt"]


def test_a_failure_records_when_and_keeps_the_record_for_the_retention(chunky):
    chunky.CHUNKY_REDIS_COMPLETED_RETENTION = 3600  # seconds
    store = get_store()
    data = payload(100)
    upload_id = processing_upload(store, chunky, data, md5(data))
    store.redis.pexpire(store.record_key(upload_id), 60_000)  # as a processing record might be
    upload = store.get(upload_id)
    before = store.now()
    outcome = finalize_module._fail(upload, store, "the reason", "task-1")
    assert outcome == Outcome(FAILED, "the reason")
    failed = store.get(upload_id)
    assert (failed.status, failed.reason) == (FAILED, "the reason")
    assert before <= failed.completed <= store.now()
    ttl = store.redis.pttl(store.record_key(upload_id))
    assert 3_500_000 < ttl <= 3_600_000
    # A second failure of the same upload is refused, and says what the upload is now.
    assert finalize_module._fail(upload, store, "again", "task-2") == Outcome("skipped", FAILED)


def test_fail_upload_fails_only_an_upload_in_processing(chunky, store):
    assert fail_upload("0" * 32, "gone") == Outcome("skipped")
    data = payload(100)
    upload_id = processing_upload(store, chunky, data, md5(data))
    assert store.get(upload_id).status == PROCESSING
    assert fail_upload(upload_id, "gave up") == Outcome(FAILED, "gave up")
    assert fail_upload(upload_id, "gave up again") == Outcome("skipped")
    assert store.get(upload_id).reason == "gave up"


def test_finalize_skips_what_is_not_processing_and_says_why(chunky, store):
    assert finalize("0" * 32) == Outcome("skipped", "missing")
    data = payload(100)
    upload_id = processing_upload(store, chunky, data, md5(data))
    assert finalize(upload_id).status == "complete"
    assert finalize(upload_id) == Outcome("skipped", "complete")


def test_a_busy_upload_names_itself(chunky, store):
    data = payload(100)
    upload_id = processing_upload(store, chunky, data, md5(data))
    assert store.take_lease(upload_id, "another worker", 60_000)
    with pytest.raises(FinalizeBusy) as busy:
        finalize(upload_id)
    assert busy.value.args == (upload_id,)


def test_an_upload_without_a_filename_is_named_upload(chunky, store):
    data = payload(100)
    upload_id = processing_upload(store, chunky, data, md5(data))
    store.redis.hset(store.record_key(upload_id), "filename", "")
    assert finalize(upload_id).status == "complete"
    assert store.get(upload_id).final_name == f"chunky_redis/{upload_id}/upload"


def test_the_lease_is_renewed_by_a_named_daemon_thread_that_ends_with_it(
    chunky, store, monkeypatch
):
    data = payload(100)
    upload_id = processing_upload(store, chunky, data, md5(data))
    seen: list[threading.Thread] = []
    real = finalize_module._hand_off

    def look(*args):
        seen.extend(t for t in threading.enumerate() if t.name == f"chunky-lease-{upload_id}")
        return real(*args)

    monkeypatch.setattr(finalize_module, "_hand_off", look)
    assert finalize(upload_id).status == "complete"
    [renewer] = seen
    assert renewer.daemon  # a worker that exits is never held up by a renewal
    assert not renewer.is_alive()  # joined before finalize() returned


def test_missing_bytes_fail_with_the_reason(chunky, store):
    data = payload(100)
    upload_id = processing_upload(store, chunky, data, md5(data))
    get_storage().delete(upload_id)
    outcome = finalize(upload_id)  # no exception, no retry: a plain failure
    assert outcome.status == FAILED
    assert outcome.reason.startswith("The uploaded bytes are missing")
    assert store.get(upload_id).reason == outcome.reason


class NoUrlStorage(FileSystemStorage):
    def url(self, name):
        raise NotImplementedError("this storage serves no URLs")


def test_a_storage_without_urls_completes_with_an_empty_url(chunky, store):
    chunky.CHUNKY_REDIS_FINAL_STORAGE = f"{__name__}.NoUrlStorage"
    data = payload(100)
    upload_id = processing_upload(store, chunky, data, md5(data))
    assert finalize(upload_id) == Outcome("complete")
    assert store.get(upload_id).final_url == ""


def test_a_completed_record_is_kept_for_the_retention(chunky):
    chunky.CHUNKY_REDIS_COMPLETED_RETENTION = 3600  # seconds
    store = get_store()
    data = payload(100)
    upload_id = processing_upload(store, chunky, data, md5(data))
    store.redis.pexpire(store.record_key(upload_id), 60_000)  # as a processing record might be
    assert finalize(upload_id).status == "complete"
    assert 3_500_000 < store.redis.pttl(store.record_key(upload_id)) <= 3_600_000


def test_completion_forgets_the_checksum_state(chunky, store):
    data = payload(100)
    state = ResumableHash("md5", None)
    state.update(data)
    upload_id = processing_upload(store, chunky, data, md5(data), hash_state=state.serialize())
    assert finalize(upload_id).status == "complete"
    assert store.get(upload_id).hash_state == b""  # no use once complete: not kept for days


def test_a_mismatch_of_the_received_bytes_says_so(chunky, store):
    data = payload(100)
    other = ResumableHash("md5", None)
    other.update(b"something else")
    upload_id = processing_upload(store, chunky, data, md5(data), hash_state=other.serialize())
    outcome = finalize(upload_id)
    assert outcome.status == FAILED
    assert outcome.reason.startswith("The md5 of the received bytes (")


def test_a_save_whose_rename_fails_leaves_no_temporary_file(chunky, store, monkeypatch):
    chunky.CHUNKY_REDIS_FINAL_STORAGE = f"{__name__}.CountingStorage"
    data = payload(2000)
    upload_id = processing_upload(store, chunky, data, md5(data))
    from chunky_redis.processing import handoff

    def refuse(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(handoff.os, "rename", refuse)
    with pytest.raises(OSError):
        finalize_module.finalize(
            upload_id, store=store, chunks=get_storage(), final=CountingStorage(), run_id="t"
        )
    folder = os.path.join(chunky.MEDIA_ROOT, f"chunky_redis/{upload_id}")
    assert os.listdir(folder) == []  # the temporary file went with the failure
    assert store.get(upload_id).status == PROCESSING  # and the bytes wait for the retry
    assert get_storage().exists(upload_id)


@pytest.mark.parametrize("where", ["chunks", "final name", "safe name", "nowhere"])
def test_a_failed_upload_is_retried_wherever_its_bytes_are(chunky, store, where):
    """chunky_retry: the bytes still in the upload directory, or already handed off under
    the client's name or the safe one (a worker died after the hand-off); else no_bytes."""
    from chunky_redis.chunk_storages import get_final_storage
    from chunky_redis.processing.completion import retry_failed
    from chunky_redis.processing.handoff import final_name_for

    data = payload(300)
    upload_id = processing_upload(store, chunky, data, md5(data))
    assert finalize_module._fail(store.get(upload_id), store, "broken", "task-1").status == FAILED
    final = get_final_storage()
    if where != "chunks":
        get_storage().delete(upload_id)
    if where in ("final name", "safe name"):
        name = final_name_for(store.get(upload_id), final, safe=where == "safe name")
        final.save(name, ContentFile(data))
    queued: list[str] = []
    before = store.now()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("chunky_redis.processing.completion.enqueue_finalize", queued.append)
        answer = retry_failed(upload_id)
    if where == "nowhere":
        assert (answer, queued, store.get(upload_id).status) == ("no_bytes", [], FAILED)
        return
    assert (answer, queued) == ("queued", [upload_id])
    retried = store.get(upload_id)
    assert (retried.status, retried.reason, retried.completed) == (PROCESSING, "", 0)
    assert retried.queued >= before
    assert upload_id in store.due_processing(store.now() + 1)  # the sweeper watches it again
    assert store.failed_ids() == []


def test_bytes_handed_off_under_the_safe_name_are_found(chunky, store):
    """A worker saved the file under the safe name (the storage refused the client's) and
    died before recording it: the next attempt finds it there and records that name."""
    from chunky_redis.chunk_storages import get_final_storage
    from chunky_redis.processing.handoff import final_name_for

    data = payload(300)
    upload_id = processing_upload(store, chunky, data, md5(data))
    final = get_final_storage()
    safe = final_name_for(store.get(upload_id), final, safe=True)
    final.save(safe, ContentFile(data))
    get_storage().delete(upload_id)
    assert finalize(upload_id).status == "complete"
    assert store.get(upload_id).final_name == safe != final_name_for(store.get(upload_id), final)


def test_the_reasons_of_a_failed_verification(chunky, store):
    data = payload(300)
    upload_id = processing_upload(store, chunky, data, md5(data))
    get_storage().truncate(upload_id, 0)
    outcome = finalize(upload_id)
    assert outcome == Outcome(FAILED, "The upload directory holds 0 of the 300 bytes received.")
    chunky.CHUNKY_REDIS_VERIFY_STORED_BYTES = True
    upload_id = processing_upload(store, chunky, data, md5(b"other"))
    outcome = finalize(upload_id)
    assert outcome.status == FAILED
    assert outcome.reason == (
        f"The md5 of the stored bytes ({md5(data)}) does not match the client's ({md5(b'other')})."
    )


def test_a_concatenation_with_a_missing_part_fails_with_the_reason(chunky, store, signal_log):
    from chunky_redis.core.store import CONCAT_PARTS

    upload_id = processing_upload(store, chunky, b"", "", extra={CONCAT_PARTS: ["0" * 32]})
    outcome = finalize(upload_id)
    assert outcome == Outcome(
        FAILED, "A part of this concatenation is missing (terminated or expired)."
    )
    assert store.get(upload_id).reason == outcome.reason


def test_a_busy_finalization_looks_again_just_after_the_lease_would_lapse(chunky, store):
    data = payload(100)
    upload_id = processing_upload(store, chunky, data, md5(data))
    store.take_lease(upload_id, "another worker", 1_000_000)
    with pytest.raises(FinalizeBusy) as busy:
        finalize(upload_id)
    assert 999.9 < busy.value.retry_in <= 1000.25
    store.redis.pexpire(store.lease_key(upload_id), 100)
    with pytest.raises(FinalizeBusy) as busy:
        finalize(upload_id)
    assert busy.value.retry_in == 0.5


def test_the_final_storage_given_is_the_one_used(chunky, store, tmp_path):
    data = payload(100)
    upload_id = processing_upload(store, chunky, data, md5(data))
    elsewhere = FileSystemStorage(location=str(tmp_path / "elsewhere"))
    outcome = finalize_module.finalize(
        upload_id, store=store, chunks=get_storage(), final=elsewhere, run_id="t"
    )
    assert outcome.status == "complete"
    assert elsewhere.exists(store.get(upload_id).final_name)


def test_the_queue_delay_is_measured_only_for_a_finalization_that_ran(chunky, store, monkeypatch):
    data = payload(100)
    upload_id = processing_upload(store, chunky, data, md5(data))
    store.redis.hset(store.record_key(upload_id), "queued", store.now() + 60_000)  # clock skew
    assert finalize(upload_id).waited_ms == 0
    upload_id = processing_upload(store, chunky, data, md5(data))
    store.redis.hset(store.record_key(upload_id), "queued", store.now() - 1000)
    real = finalize_module._hand_off

    def another_run_finishes_first(*args):
        name = real(*args)
        store.transition(upload_id, PROCESSING, "complete", signal_run="other")
        return name

    monkeypatch.setattr(finalize_module, "_hand_off", another_run_finishes_first)
    outcome = finalize(upload_id)
    assert (outcome.status, outcome.waited_ms) == ("skipped", None)


def test_a_lost_last_byte_is_never_made_up_by_the_length_seal(chunky, store):
    """A one-byte upload whose chunk file lost its byte: the seal never extends a short file
    (a zero byte would pass the check against the streamed checksum state), it fails."""
    hasher = ResumableHash("md5", None)
    hasher.update(b"x")
    upload_id = processing_upload(store, chunky, b"x", md5(b"x"), hash_state=hasher.serialize())
    get_storage().truncate(upload_id, 0)
    assert finalize(upload_id) == Outcome(
        FAILED, "The upload directory holds 0 of the 1 bytes received."
    )


def test_a_re_verification_reads_the_upload_s_bytes_only(chunky, store):
    """Whatever follows the upload's length in its chunk file is not part of its digest."""
    chunky.CHUNKY_REDIS_VERIFY_STORED_BYTES = True
    data = payload(300)
    upload_id = processing_upload(store, chunky, data, md5(data))
    with open(get_storage().path(upload_id), "ab") as f:
        f.write(b"a straggler's bytes")
    assert finalize_module._verify(store.get(upload_id), get_storage()) == ""


def test_dropping_the_lease_waits_for_a_renewal_in_flight(chunky, store, monkeypatch):
    """drop() returns once the renewing thread has ended: no renewal runs after the drop."""
    events: list[str] = []
    in_flight = threading.Event()
    extend, drop = store.extend_lease, store.drop_lease
    lease = finalize_module._Lease(store, "lease-drop", ttl_ms=30)

    def slow_extend(*args):
        in_flight.set()
        lease._stop.wait(5)  # still renewing when the drop begins
        time.sleep(0.05)
        events.append("renewed")
        return extend(*args)

    def recorded_drop(*args):
        events.append("dropped")
        return drop(*args)

    monkeypatch.setattr(store, "extend_lease", slow_extend)
    monkeypatch.setattr(store, "drop_lease", recorded_drop)
    assert lease.take()
    assert in_flight.wait(5)
    lease.drop()
    assert events == ["renewed", "dropped"]
