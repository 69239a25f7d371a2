"""A deferred-durability window is synced after its chunk is answered (issue 11), on every
backend: the chunk that fills the window is recorded first, then a background sync syncs the
file and moves the record's synced point, unless the record moved on without it.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time

import pytest
import redis

from chunky_redis.core import errors as exc
from chunky_redis.core.checksums import ResumableHash
from chunky_redis.core.context import in_background
from chunky_redis.core.filesystem import SUFFIX
from chunky_redis.core.store import Upload, UploadStore
from tests.support.api import LiveApi
from tests.support.processes import REAL_REDIS_URL, SiteProcess, WorkerProcess, live_env, wait_for
from tests.test_power_loss import Background, PowerLossDisk, send, service

KiB = 1 << 10
WINDOW = 512 * KiB


@pytest.fixture
def disk(chunky, monkeypatch) -> PowerLossDisk:
    return PowerLossDisk.under(chunky, monkeypatch)


def first_window(chunky, background: Background, boot: str = "boot-0"):
    """An upload whose first chunk filled the window; its sync not run yet."""
    completed: list[Upload] = []
    svc = service(chunky, WINDOW, boot, completed, background)
    data = random.Random(21).randbytes(3 * WINDOW)
    up = send(svc, None, data[:WINDOW], 0, len(data))
    return svc, up, data


def test_the_chunk_that_fills_the_window_is_answered_before_the_sync(chunky, disk):
    background = Background()
    svc, up, _ = first_window(chunky, background)
    assert len(background) == 1 and disk.syncs == 0  # recorded, not synced yet
    stored = svc.store.get(up.upload_id)
    assert (stored.offset, stored.durable, stored.boot) == (WINDOW, 0, "boot-0")
    assert stored.sync_ticket != ""
    background.run()
    stored = svc.store.get(up.upload_id)
    assert disk.syncs == 1
    assert (stored.durable, stored.durable_state, stored.boot, stored.sync_ticket) == (
        WINDOW,
        up.hash_state,
        "",  # nothing past the synced point: no boot holds unsynced bytes
        "",
    )


def test_a_sync_that_ends_behind_the_offset_keeps_the_boot(chunky, disk):
    background = Background()
    svc, up, data = first_window(chunky, background)
    state_at_window = up.hash_state
    up = send(svc, up.upload_id, data[WINDOW : WINDOW + 64 * KiB], WINDOW, len(data))
    assert len(background) == 1  # one sync in flight for the upload: no second one
    background.run()
    stored = svc.store.get(up.upload_id)
    assert (stored.offset, stored.durable, stored.durable_state, stored.boot) == (
        WINDOW + 64 * KiB,
        WINDOW,
        state_at_window,
        "boot-0",  # the last 64 KiB are still this boot's unsynced bytes
    )


def test_one_sync_at_a_time_for_an_upload_in_a_process(chunky, disk):
    background = Background()
    svc, up, data = first_window(chunky, background)
    ticket = svc.store.get(up.upload_id).sync_ticket
    up = send(svc, up.upload_id, data[WINDOW : 2 * WINDOW], WINDOW, len(data))
    assert len(background) == 1  # the window is full again, but a sync is running
    assert svc.store.get(up.upload_id).sync_ticket == ticket  # still the first one's
    background.run()
    assert svc.store.get(up.upload_id).durable == WINDOW
    # that sync is done: the next chunk that finds a full window names a new one
    up = send(svc, up.upload_id, data[2 * WINDOW : 2 * WINDOW + 1], 2 * WINDOW, len(data))
    assert len(background) == 1
    assert svc.store.get(up.upload_id).sync_ticket not in ("", ticket)
    background.run()
    stored = svc.store.get(up.upload_id)
    assert (stored.durable, stored.durable_state) == (2 * WINDOW + 1, up.hash_state)


def test_a_sync_of_bytes_a_recovery_took_back_marks_nothing(chunky, disk):
    """Another boot found the unsynced bytes wrong and took the upload back; the client then
    sent other bytes through the first process. Its late sync must not name its old state."""
    background = Background()
    svc, up, data = first_window(chunky, background)
    with open(disk.directory + "/" + up.upload_id + SUFFIX, "r+b") as f:
        f.write(b"\0" * 16)  # what the other host reads differs from what was written
    other = service(chunky, WINDOW, "boot-1", [], Background())
    with pytest.raises(exc.OffsetMismatch) as e:
        send(other, up.upload_id, data[WINDOW : WINDOW + 1], WINDOW, len(data))
    assert e.value.expected == 0
    resent = random.Random(22).randbytes(WINDOW + 1)
    send(svc, up.upload_id, resent[:WINDOW], 0, len(data))
    send(svc, up.upload_id, resent[WINDOW:], WINDOW, len(data))
    assert len(background) == 1  # the first sync, of the bytes that were taken back
    background.run()
    stored = svc.store.get(up.upload_id)
    assert (stored.durable, stored.boot) == (0, "boot-0")
    up = send(svc, up.upload_id, data[WINDOW + 1 : WINDOW + 2], WINDOW + 1, len(data))
    background.run()  # a sync of the resent bytes marks them
    stored = svc.store.get(up.upload_id)
    assert (stored.durable, stored.durable_state) == (WINDOW + 2, up.hash_state)
    assert (
        stored.hexdigest("md5") == hashlib.md5(resent + data[WINDOW + 1 : WINDOW + 2]).hexdigest()
    )


def test_a_chunk_that_was_not_recorded_starts_no_sync(chunky, disk, monkeypatch):
    background = Background()
    svc, up, data = first_window(chunky, background)
    background.run()
    commit = svc.store.commit

    def commit_too_late(upload, token, **kwargs):  # the lock lapsed while the chunk streamed
        svc.store.redis.delete(svc.store.lock_key(upload.upload_id))
        return commit(upload, token, **kwargs)

    monkeypatch.setattr(svc.store, "commit", commit_too_late)
    with pytest.raises(exc.LockLost):
        send(svc, up.upload_id, data[WINDOW : 2 * WINDOW], WINDOW, len(data))
    assert len(background) == 0
    assert svc.store.get(up.upload_id).sync_ticket == ""


def test_a_sync_whose_upload_is_gone_does_nothing(chunky, disk, caplog):
    background = Background()
    svc, up, _ = first_window(chunky, background)
    svc.storage.delete(up.upload_id)
    svc.store.redis.delete(svc.store.record_key(up.upload_id))
    with caplog.at_level(logging.WARNING, logger="chunky_redis"):
        background.run()
    assert caplog.records == []
    assert svc.context._syncing == set()


def test_a_failed_sync_is_logged_and_marks_nothing(chunky, disk, monkeypatch, caplog):
    background = Background()
    svc, up, _ = first_window(chunky, background)

    def full_disk(upload_id: str) -> None:
        raise exc.StorageError("Cannot flush the chunk file: No space left on device.")

    monkeypatch.setattr(svc.storage, "sync", full_disk)
    with caplog.at_level(logging.WARNING, logger="chunky_redis"):
        background.run()
    assert "the background sync of" in caplog.text and "No space left" in caplog.text
    stored = svc.store.get(up.upload_id)
    assert (stored.durable, stored.boot) == (0, "boot-0")
    assert svc.context._syncing == set()  # the next window may try again


def test_a_sync_that_cannot_start_is_logged(chunky, disk, caplog):
    svc, up, data = first_window(chunky, Background())
    svc.context._syncing.clear()

    def no_threads(job) -> None:
        raise RuntimeError("can't start new thread")

    svc.context.run_behind = no_threads
    with caplog.at_level(logging.WARNING, logger="chunky_redis"):
        up = send(svc, up.upload_id, data[WINDOW : WINDOW + 1], WINDOW, len(data))
    assert up.offset == WINDOW + 1  # the chunk is recorded all the same
    assert "cannot start the sync of" in caplog.text
    assert svc.context._syncing == set()


def test_the_default_runs_the_sync_beside_the_request(chunky, disk):
    ran_in: list[threading.Thread] = []
    done = threading.Event()

    def job() -> None:
        ran_in.append(threading.current_thread())
        done.set()

    in_background(job)
    assert done.wait(10)
    assert ran_in[0] is not threading.current_thread()
    svc = service(chunky, WINDOW, "boot-0", [])
    svc.context.run_behind = in_background
    data = random.Random(23).randbytes(WINDOW + 1)
    up = send(svc, None, data[:WINDOW], 0, len(data))
    deadline = time.monotonic() + 10
    while svc.store.get(up.upload_id).durable != WINDOW:
        assert time.monotonic() < deadline, "the background sync never marked the window"
        time.sleep(0.01)
    assert disk.synced[up.upload_id + SUFFIX] == data[:WINDOW]


def test_a_late_sync_never_moves_the_synced_point_back(chunky, disk):
    """The upload's last chunk synced everything while a window's sync was still pending."""
    background = Background()
    svc, up, data = first_window(chunky, background)
    up = send(svc, up.upload_id, data[WINDOW:], WINDOW, len(data))  # the end: synced inline
    assert (up.durable, up.boot) == (len(data), "")
    background.run()
    stored = svc.store.get(up.upload_id)
    assert (stored.durable, stored.durable_state) == (len(data), up.hash_state)


@pytest.mark.live
def test_the_deployed_gevent_worker_syncs_windows_in_the_background(tmp_path):
    """The bundled site as deployed (gunicorn's gevent worker, deferred durability on): the
    windows' syncs run beside the requests and mark the record, and the upload completes
    with the client's bytes."""
    env = live_env(tmp_path, CHUNKY_FSYNC="1", CHUNKY_SYNC_EVERY=str(1 << 20))
    store = UploadStore(redis.Redis.from_url(REAL_REDIS_URL), prefix=env["CHUNKY_TEST_KEY_PREFIX"])
    chunk = 256 * KiB
    data = random.Random(24).randbytes(6 * (1 << 20) + 1)
    with SiteProcess(env, workers=1, threads=2) as site, WorkerProcess(env):
        api = LiveApi(site.url)
        reply = api.put("/upload/", data[:chunk], content_range=f"bytes 0-{chunk - 1}/{len(data)}")
        upload_id = reply.data["upload_id"]
        marks = set()
        for start in range(chunk, len(data) - 1, chunk):  # all but the last byte
            end = min(start + chunk, len(data) - 1)
            reply = api.put(
                f"/upload/{upload_id}/",
                data[start:end],
                content_range=f"bytes {start}-{end - 1}/{len(data)}",
            )
            assert reply.status == 200, reply.body
            marks.add(store.get(upload_id).durable)  # type: ignore[union-attr]
        wait_for(
            lambda: store.get(upload_id).durable >= 5 << 20,  # type: ignore[union-attr]
            message="the last window's background sync",
        )
        assert len(marks - {0}) >= 3  # windows were marked while the upload went on
        stored = store.get(upload_id)
        assert stored is not None
        hasher = ResumableHash("md5", None)
        hasher.update(data[: stored.durable])
        assert stored.durable_state == hasher.serialize()  # the state at the synced point
        assert "background sync" not in site.log_text()  # no sync failed, none was refused
        end = len(data) - 1
        reply = api.put(
            f"/upload/{upload_id}/", data[end:], content_range=f"bytes {end}-{end}/{len(data)}"
        )
        assert reply.status == 200, reply.body
        assert (
            api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()}).status
            == 200
        )
