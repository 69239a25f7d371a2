"""The post-processing task in eager mode, on fakeredis and on the real Redis.

Completion is captured (``queued``) so that each test decides when the task
runs and can look at the upload while it is still "processing".
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from datetime import datetime

import pytest
from django.core.files.storage import Storage
from django.test import Client

import tasks  # noqa: F401  (the bundled Celery app: eager, configured from tests/settings.py)
from chunky_redis import signals
from chunky_redis.core.store import PROCESSING, Upload
from chunky_redis.processing import finalize as finalize_module
from chunky_redis.processing.completion import finalize
from chunky_redis.processing.finalize import FinalizeBusy
from chunky_redis.tasks import finalize_upload

CHUNK = 64 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


def put_chunks(
    client: Client, data: bytes, filename: str = "report.bin", chunk: int = CHUNK
) -> str:
    upload_id = None
    for start in range(0, len(data), chunk):
        part = data[start : start + chunk]
        url = f"/upload/{upload_id}/" if upload_id else f"/upload/?filename={filename}"
        headers = {"Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}"}
        r = client.put(url, data=part, content_type="application/octet-stream", headers=headers)
        assert r.status_code == 200, r.json()
        upload_id = r.json()["upload_id"]
    return upload_id


def complete(client: Client, upload_id: str, data: bytes):
    return client.post(
        f"/upload/{upload_id}/",
        data={"md5": hashlib.md5(data).hexdigest()},
        content_type="application/json",
    )


def status(client: Client, upload_id: str) -> dict:
    r = client.get(f"/upload/{upload_id}/")
    assert r.status_code == 200, r.json()
    return r.json()


def named(signal_log, name: str) -> list[dict]:
    return [kwargs for signal, kwargs in signal_log if signal == name]


@pytest.fixture
def queued(chunky, monkeypatch):
    """Completions are recorded here instead of running the task."""
    ids: list[str] = []
    monkeypatch.setattr("chunky_redis.processing.completion.enqueue_finalize", ids.append)
    return ids


@pytest.fixture
def hand_offs(monkeypatch):
    """Every call of the hand-off step, as (chunk path, final name)."""
    calls: list[tuple[str, str]] = []
    real = finalize_module._hand_off

    def counting(path, final, name):
        calls.append((path, name))
        return real(path, final, name)

    monkeypatch.setattr(finalize_module, "_hand_off", counting)
    return calls


def media_path(chunky, name: str) -> str:
    return os.path.join(chunky.MEDIA_ROOT, name)


def test_lifecycle_complete(chunky, store, queued, signal_log, client):
    data = payload(3 * CHUNK + 123)
    upload_id = put_chunks(client, data)
    assert status(client, upload_id)["status"] == "uploading"

    r = complete(client, upload_id, data)
    assert r.status_code == 200 and r.json()["status"] == "processing"
    assert queued == [upload_id]
    seen = status(client, upload_id)
    assert seen["status"] == "processing" and "final_name" not in seen

    assert finalize_upload.delay(upload_id).get() == "complete"

    seen = status(client, upload_id)
    final_name = f"chunky_redis/{upload_id}/report.bin"
    assert seen["status"] == "complete"
    assert seen["final_name"] == final_name
    assert seen["final_url"] == "/" + final_name  # default_storage, MEDIA_URL unset
    assert seen["completed"] and "reason" not in seen
    with open(media_path(chunky, final_name), "rb") as f:
        assert f.read() == data
    assert not os.path.exists(os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part"))

    assert named(signal_log, "upload_completed") == [
        {
            "upload_id": upload_id,
            "filename": "report.bin",
            "size": len(data),
            "checksum_algorithm": "md5",
            "checksum": hashlib.md5(data).hexdigest(),
            "final_name": final_name,
            "final_url": "/" + final_name,
            "user_id": None,
            "extra": {},
        }
    ]
    [legacy] = named(signal_log, "chunky_upload_complete")
    assert legacy["upload_id"] == upload_id
    assert (
        isinstance(legacy["completed_on"], datetime) and legacy["completed_on"].tzinfo is not None
    )
    assert int(legacy["completed_on"].timestamp() * 1000) == store.get(upload_id).completed


def test_completed_record_kept_for_the_retention(chunky, store, queued, client):
    chunky.CHUNKY_REDIS_COMPLETED_RETENTION = 3600
    data = payload(1000)
    upload_id = put_chunks(client, data)
    complete(client, upload_id, data)
    finalize_upload.delay(upload_id)
    ttl_ms = store.redis.pttl(store.record_key(upload_id))
    assert 3590_000 < ttl_ms <= 3600_000
    # A retried completion still answers, and does not run anything again.
    r = complete(client, upload_id, data)
    assert r.status_code == 400 and r.json()["code"] == "already_complete"
    assert queued == [upload_id]


def test_second_run_hands_off_and_signals_nothing(chunky, queued, hand_offs, signal_log, client):
    data = payload(2 * CHUNK)
    upload_id = put_chunks(client, data)
    complete(client, upload_id, data)

    assert finalize_upload.delay(upload_id).get() == "complete"
    assert finalize_upload.delay(upload_id).get() == "skipped"  # a redelivered or duplicated task
    assert finalize_upload.apply(args=[upload_id]).get() == "skipped"

    assert len(hand_offs) == 1
    assert len(named(signal_log, "upload_completed")) == 1
    assert len(named(signal_log, "chunky_upload_complete")) == 1


def test_resumes_after_a_death_between_hand_off_and_record(
    chunky, store, queued, signal_log, client, monkeypatch
):
    """The file reached the final storage, then the worker died: the next run only records it."""
    data = payload(5000)
    upload_id = put_chunks(client, data)
    complete(client, upload_id, data)
    real_transition = type(store).transition
    deaths: list[int] = []

    def dies_once(self, *args, **kwargs):
        if not deaths:
            deaths.append(1)
            raise SystemExit("worker killed")
        return real_transition(self, *args, **kwargs)

    monkeypatch.setattr("chunky_redis.core.store.UploadStore.transition", dies_once)
    with pytest.raises(SystemExit):
        finalize(upload_id)
    assert not os.path.exists(os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part"))
    assert store.get(upload_id).status == PROCESSING

    assert finalize_upload.delay(upload_id).get() == "complete"
    upload = store.get(upload_id)
    with open(media_path(chunky, upload.final_name), "rb") as f:
        assert f.read() == data
    assert len(named(signal_log, "upload_completed")) == 1


def test_same_volume_hand_off_is_a_rename(chunky, queued, client):
    data = payload(CHUNK + 1)
    upload_id = put_chunks(client, data)
    complete(client, upload_id, data)
    chunk_path = os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part")
    inode = os.stat(chunk_path).st_ino

    finalize_upload.delay(upload_id)

    final = media_path(chunky, f"chunky_redis/{upload_id}/report.bin")
    assert os.stat(final).st_ino == inode  # the same file, renamed; not a copy
    assert not os.path.exists(chunk_path)


def test_a_rename_refused_across_mounts_falls_back_to_a_save(chunky, queued, client, monkeypatch):
    """Two mounts of one filesystem share st_dev but refuse rename() with EXDEV."""
    import errno

    data = payload(CHUNK + 7)
    upload_id = put_chunks(client, data)
    complete(client, upload_id, data)

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr("chunky_redis.processing.handoff.os.replace", cross_device)
    assert finalize_upload.delay(upload_id).get() == "complete"
    final = media_path(chunky, f"chunky_redis/{upload_id}/report.bin")
    with open(final, "rb") as f:
        assert f.read() == data
    assert not os.path.exists(os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part"))


class RecordingStorage(Storage):
    """A storage that is not a filesystem: files live in a dict, and each save
    records the sizes of the pieces it was given."""

    files: dict[str, bytes] = {}
    pieces: list[int] = []

    def _save(self, name, content):
        buffer = bytearray()
        for piece in content.chunks():
            RecordingStorage.pieces.append(len(piece))
            buffer += piece
        RecordingStorage.files[name] = bytes(buffer)
        return name

    def _open(self, name, mode="rb"):
        raise NotImplementedError

    def exists(self, name):
        return name in RecordingStorage.files

    def delete(self, name):
        RecordingStorage.files.pop(name, None)

    def url(self, name):
        return f"https://files.example/{name}"


def test_other_storage_gets_a_streamed_save(chunky, store, queued, signal_log, client):
    chunky.CHUNKY_REDIS_FINAL_STORAGE = f"{__name__}.RecordingStorage"
    RecordingStorage.files, RecordingStorage.pieces = {}, []
    data = payload(5 * CHUNK + 17)
    upload_id = put_chunks(client, data, filename="movie.mp4")
    complete(client, upload_id, data)

    assert finalize_upload.delay(upload_id).get() == "complete"

    name = f"chunky_redis/{upload_id}/movie.mp4"
    assert RecordingStorage.files == {name: data}
    # Saved piece by piece, never as one block of the whole file.
    assert len(RecordingStorage.pieces) > 1 and max(RecordingStorage.pieces) <= CHUNK
    assert not os.path.exists(os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part"))
    seen = status(client, upload_id)
    assert seen["final_url"] == f"https://files.example/{name}"
    [sent] = named(signal_log, "upload_completed")
    assert sent["final_name"] == name and sent["final_url"] == seen["final_url"]


def test_other_volume_gets_a_streamed_save(chunky, queued, client, hand_offs):
    other = "/dev/shm"
    if (
        not os.path.isdir(other)
        or os.stat(other).st_dev == os.stat(chunky.MEDIA_ROOT.rsplit("/", 1)[0]).st_dev
    ):
        pytest.skip("no second volume to save to")
    import tempfile

    with tempfile.TemporaryDirectory(dir=other) as media:
        chunky.MEDIA_ROOT = media
        data = payload(2 * CHUNK)
        upload_id = put_chunks(client, data)
        complete(client, upload_id, data)
        chunk_path = os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part")
        assert finalize_upload.delay(upload_id).get() == "complete"
        with open(os.path.join(media, f"chunky_redis/{upload_id}/report.bin"), "rb") as f:
            assert f.read() == data
        assert not os.path.exists(chunk_path)


def test_client_filename_cannot_leave_the_upload_folder(chunky, store, queued, client):
    data = payload(100)
    r = client.put("/upload/?filename=..", data=data, content_type="application/octet-stream")
    upload_id = r.json()["upload_id"]
    assert store.get(upload_id).filename == ""  # the view already drops it ...
    store.redis.hset(
        store.record_key(upload_id), "filename", ".."
    )  # ... finalize must not trust it either
    complete(client, upload_id, data)
    assert finalize_upload.delay(upload_id).get() == "complete"
    assert store.get(upload_id).final_name == f"chunky_redis/{upload_id}/upload"


def test_corrupted_stored_bytes_fail_when_reverified(chunky, store, queued, signal_log, client):
    chunky.CHUNKY_REDIS_VERIFY_STORED_BYTES = True
    data = payload(3 * CHUNK)
    upload_id = put_chunks(client, data)
    chunk_path = os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part")
    with open(chunk_path, "r+b") as f:  # the disk flips a byte after the last chunk
        f.seek(CHUNK + 5)
        f.write(bytes([data[CHUNK + 5] ^ 0xFF]))
    assert complete(client, upload_id, data).status_code == 200  # the received bytes were right

    assert finalize_upload.delay(upload_id).get() == "failed"

    seen = status(client, upload_id)
    assert seen["status"] == "failed"
    assert "stored bytes" in seen["reason"] and hashlib.md5(data).hexdigest() in seen["reason"]
    assert named(signal_log, "upload_failed") == [
        {"upload_id": upload_id, "reason": seen["reason"]}
    ]
    assert named(signal_log, "upload_completed") == []
    assert os.path.exists(chunk_path)  # kept for `manage.py chunky_retry` until the retention ends
    assert not os.path.exists(media_path(chunky, f"chunky_redis/{upload_id}"))
    # Failing is also done once.
    assert finalize_upload.delay(upload_id).get() == "skipped"
    assert len(named(signal_log, "upload_failed")) == 1


def processing_upload(store, chunky, data: bytes, checksum: str, **fields) -> str:
    """A record in "processing" written directly, e.g. one without incremental checksum state."""
    upload_id = os.urandom(16).hex()
    os.makedirs(chunky.CHUNKY_REDIS_UPLOAD_DIR, exist_ok=True)
    with open(os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part"), "wb") as f:
        f.write(data)
    now = store.now()
    store.create(
        Upload(
            upload_id=upload_id,
            filename="a.txt",
            size=len(data),
            offset=len(data),
            status=PROCESSING,
            created=now,
            expires=now + 60_000,
            checksum=checksum,
            **fields,
        )
    )
    return upload_id


def test_checksum_mismatch_without_incremental_state_fails(chunky, store, signal_log):
    data = payload(1000)
    upload_id = processing_upload(store, chunky, data, "0" * 32)
    assert finalize_upload.delay(upload_id).get() == "failed"
    upload = store.get(upload_id)
    assert (
        upload.status == "failed"
        and "does not match" in upload.reason
        and "0" * 32 in upload.reason
    )
    assert named(signal_log, "upload_failed") == [{"upload_id": upload_id, "reason": upload.reason}]


def test_without_incremental_state_the_file_is_read(chunky, store, signal_log):
    data = payload(1000)
    upload_id = processing_upload(
        store, chunky, data, hashlib.md5(data).hexdigest(), owner="42", extra={"k": 1}
    )
    assert finalize_upload.delay(upload_id).get() == "complete"
    [sent] = named(signal_log, "upload_completed")
    assert sent["user_id"] == "42" and sent["extra"] == {"k": 1}


def test_missing_bytes_fail(chunky, store, signal_log):
    data = payload(1000)
    upload_id = processing_upload(store, chunky, data, hashlib.md5(data).hexdigest())
    os.truncate(os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part"), 10)
    assert finalize_upload.delay(upload_id).get() == "failed"
    assert "10 of the 1000 bytes" in store.get(upload_id).reason

    other = processing_upload(store, chunky, data, hashlib.md5(data).hexdigest())
    os.unlink(os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, other + ".part"))
    assert finalize_upload.delay(other).get() == "failed"
    assert "missing" in store.get(other).reason
    assert [k["upload_id"] for k in named(signal_log, "upload_failed")] == [upload_id, other]


def test_a_raising_receiver_is_logged_and_others_still_run(
    chunky, store, queued, signal_log, client, caplog
):
    later: list[str] = []

    def broken(**kwargs):
        raise ValueError("receiver bug")

    def after(upload_id, **kwargs):
        later.append(upload_id)

    signals.upload_completed.connect(broken, weak=False)
    signals.upload_completed.connect(after, weak=False)
    try:
        data = payload(100)
        upload_id = put_chunks(client, data)
        complete(client, upload_id, data)
        with caplog.at_level(logging.ERROR, logger="chunky_redis"):
            assert finalize_upload.delay(upload_id).get() == "complete"
    finally:
        signals.upload_completed.disconnect(broken)
        signals.upload_completed.disconnect(after)
    assert later == [upload_id]  # connected after the broken one, and still called
    assert len(named(signal_log, "chunky_upload_complete")) == 1
    assert status(client, upload_id)["status"] == "complete"
    [record] = [r for r in caplog.records if r.name == "chunky_redis"]
    assert "upload_completed" in record.getMessage() and upload_id in record.getMessage()
    assert record.exc_info[0] is ValueError


def test_transient_errors_are_retried(chunky, store, queued, signal_log, client, monkeypatch):
    real = finalize_module._hand_off
    attempts: list[int] = []

    def flaky(path, final, name):
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("storage hiccup")
        return real(path, final, name)

    monkeypatch.setattr(finalize_module, "_hand_off", flaky)
    data = payload(1000)
    upload_id = put_chunks(client, data)
    complete(client, upload_id, data)
    assert finalize_upload.delay(upload_id).get() == "complete"
    assert len(attempts) == 3
    assert len(named(signal_log, "upload_completed")) == 1


def test_persistent_errors_fail_the_upload_after_the_retries(
    chunky, store, queued, signal_log, client, monkeypatch
):
    chunky.CHUNKY_REDIS_FINALIZE_MAX_RETRIES = 2
    attempts: list[int] = []

    def broken(path, final, name):
        attempts.append(1)
        raise OSError("storage is down")

    monkeypatch.setattr(finalize_module, "_hand_off", broken)
    data = payload(1000)
    upload_id = put_chunks(client, data)
    complete(client, upload_id, data)
    assert finalize_upload.delay(upload_id).get() == "failed"
    assert len(attempts) == 3
    seen = status(client, upload_id)
    assert seen["status"] == "failed" and "storage is down" in seen["reason"]
    assert [k["upload_id"] for k in named(signal_log, "upload_failed")] == [upload_id]


def test_lease_holder_blocks_a_second_worker(chunky, store, queued, signal_log, client):
    data = payload(1000)
    upload_id = put_chunks(client, data)
    complete(client, upload_id, data)
    assert store.take_lease(upload_id, "another-worker", 60_000)

    with pytest.raises(FinalizeBusy):
        finalize(upload_id)
    assert finalize_upload.delay(upload_id).get() == "busy"  # inline: no retry loop
    assert store.get(upload_id).status == PROCESSING and signal_log == []

    store.drop_lease(upload_id, "another-worker")
    assert finalize_upload.delay(upload_id).get() == "complete"


def test_lease_is_renewed_during_a_long_hand_off(chunky, store, queued, client, monkeypatch):
    chunky.CHUNKY_REDIS_FINALIZE_LEASE = 0.15
    real = finalize_module._hand_off
    ttls: list[int] = []

    def slow(path, final, name):
        # Stay here for more than three lease lifetimes, watching the lease.
        for _ in range(12):
            threading.Event().wait(0.04)
            ttls.append(store.redis.pttl(store.lease_key(upload_id)))
        return real(path, final, name)

    monkeypatch.setattr(finalize_module, "_hand_off", slow)
    data = payload(1000)
    upload_id = put_chunks(client, data)
    complete(client, upload_id, data)
    assert finalize_upload.delay(upload_id).get() == "complete"
    assert all(ttl > 0 for ttl in ttls), ttls
    assert not store.redis.exists(store.lease_key(upload_id))  # dropped at the end


def test_two_finalizations_at_once_hand_off_once(
    chunky, store, queued, hand_offs, signal_log, client, monkeypatch
):
    inside, release = threading.Event(), threading.Event()
    real = finalize_module._hand_off

    def held(path, final, name):
        inside.set()
        release.wait(10)
        return real(path, final, name)

    monkeypatch.setattr(finalize_module, "_hand_off", held)
    data = payload(1000)
    upload_id = put_chunks(client, data)
    complete(client, upload_id, data)
    results: list[str] = []
    # (.get() refuses to wait while another thread runs an eager task: read .result.)
    first = threading.Thread(
        target=lambda: results.append(finalize_upload.apply(args=[upload_id]).result)
    )
    first.start()
    assert inside.wait(10)
    assert (
        finalize_upload.apply(args=[upload_id]).result == "busy"
    )  # the second delivery, while the first works
    release.set()
    first.join(10)
    assert results == ["complete"]
    assert finalize_upload.delay(upload_id).get() == "skipped"
    assert len(named(signal_log, "upload_completed")) == 1


@pytest.mark.parametrize("rounds", [8])
def test_two_completions_at_once_finish_once(chunky, hand_offs, signal_log, rounds):
    """Two clients complete the same upload at the same moment (the task runs inline)."""
    client = Client()
    for _ in range(rounds):
        data = payload(2000, seed=_)
        upload_id = put_chunks(client, data)
        barrier = threading.Barrier(2)
        codes: list[int] = []

        def send(upload_id=upload_id, data=data, barrier=barrier, codes=codes):
            mine = Client()
            barrier.wait()
            codes.append(complete(mine, upload_id, data).status_code)

        threads = [threading.Thread(target=send) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(codes)[0] == 200 and codes.count(200) == 1, codes
        assert sorted(codes)[1] in (400, 409)
        assert status(client, upload_id)["status"] == "complete"
    assert len(hand_offs) == rounds
    assert len(named(signal_log, "upload_completed")) == rounds
    assert len({k["upload_id"] for k in named(signal_log, "upload_completed")}) == rounds
