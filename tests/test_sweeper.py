"""The expiry sweeper, with millisecond lifetimes, on fakeredis and on the real Redis."""

from __future__ import annotations

import hashlib
import io
import os
import time

import pytest
from django.core.management import call_command
from django.test import Client

import tasks  # noqa: F401  (the bundled Celery app: eager, configured from tests/settings.py)
from chunky_redis.core.store import UploadStore
from chunky_redis.processing.completion import purge_expired_uploads
from chunky_redis.processing.sweeper import SweepResult
from chunky_redis.tasks import finalize_upload
from chunky_redis.tasks import purge_expired_uploads as purge_task


@pytest.fixture
def queued(chunky, monkeypatch):
    """Completions are recorded here instead of running the task."""
    ids: list[str] = []
    monkeypatch.setattr("chunky_redis.processing.completion.enqueue_finalize", ids.append)
    return ids


def start(client: Client, data: bytes, total: int) -> str:
    """A new upload holding ``data`` as its first chunk out of ``total`` bytes."""
    r = client.put(
        "/upload/?filename=part.bin",
        data=data,
        content_type="application/octet-stream",
        headers={"Content-Range": f"bytes 0-{len(data) - 1}/{total}"},
    )
    assert r.status_code == 200, r.json()
    return r.json()["upload_id"]


def expired_upload(chunky, store, client: Client) -> str:
    """An upload whose lifetime (1 ms) is over."""
    chunky.CHUNKY_REDIS_EXPIRATION = 0.001
    upload_id = start(client, b"a" * 100, 200)
    chunky.CHUNKY_REDIS_EXPIRATION = 3600  # later uploads of the test live
    past(store, store.get(upload_id).expires)
    return upload_id


def past(store, deadline_ms: int) -> None:
    """Spin (at most a few ms) until the store's clock has passed ``deadline_ms``."""
    while store.now() <= deadline_ms:
        time.sleep(0.0005)


def chunk_file(chunky, upload_id: str) -> str:
    return os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part")


def orphan(chunky, age_s: float = 0) -> str:
    upload_id = os.urandom(16).hex()
    path = chunk_file(chunky, upload_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"left behind")
    if age_s:
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
    return upload_id


def expired_ids(signal_log) -> list[str]:
    return sorted(kwargs["upload_id"] for name, kwargs in signal_log if name == "upload_expired")


def test_removes_expired_and_orphans_and_leaves_live_and_processing(
    chunky, store, queued, signal_log, client
):
    chunky.CHUNKY_REDIS_ORPHAN_GRACE = 0  # every file is old enough to be looked at
    chunky.CHUNKY_REDIS_EXPIRATION = 3600
    live = start(client, b"l" * 100, 200)
    whole = b"p" * 300
    processing = start(client, whole, 300)
    r = client.post(
        f"/upload/{processing}/",
        data={"md5": hashlib.md5(whole).hexdigest()},
        content_type="application/json",
    )
    assert r.json()["status"] == "processing" and queued == [processing]
    gone = expired_upload(chunky, store, client)
    lost = orphan(chunky)

    result = purge_expired_uploads()

    assert (result.expired, result.orphans) == (1, 1)
    assert not os.path.exists(chunk_file(chunky, gone))
    assert not os.path.exists(chunk_file(chunky, lost))
    assert expired_ids(signal_log) == sorted([gone, lost])
    r = client.get(f"/upload/{gone}/")
    assert r.status_code == 410
    assert store.get(gone).status == "expired"
    assert not store.expiries.score(gone)
    # The live and the processing upload are untouched and carry on.
    with open(chunk_file(chunky, live), "rb") as f:
        assert f.read() == b"l" * 100
    with open(chunk_file(chunky, processing), "rb") as f:
        assert f.read() == whole
    r = client.put(
        f"/upload/{live}/",
        data=b"m" * 100,
        content_type="application/octet-stream",
        headers={"Content-Range": "bytes 100-199/200"},
    )
    assert r.status_code == 200 and r.json()["offset"] == 200
    assert finalize_upload.apply(args=[processing]).result == "complete"

    # Nothing is left to do: the next sweep removes and signals nothing.
    signal_log.clear()
    assert str(purge_expired_uploads()) == str(SweepResult(0, 0))
    assert signal_log == []


def test_orphan_files_are_kept_for_the_grace_period(chunky, store, signal_log):
    chunky.CHUNKY_REDIS_ORPHAN_GRACE = 3600
    fresh = orphan(chunky)
    old = orphan(chunky, age_s=7200)  # a first chunk whose writer died two hours ago

    result = purge_expired_uploads()

    assert (result.expired, result.orphans) == (0, 1)
    assert os.path.exists(chunk_file(chunky, fresh))
    assert not os.path.exists(chunk_file(chunky, old))
    assert expired_ids(signal_log) == [old]


def test_upload_whose_record_is_gone(chunky, store, client, signal_log):
    chunky.CHUNKY_REDIS_EXPIRATION = 0.001
    chunky.CHUNKY_REDIS_EXPIRED_RETENTION = 0.001  # the record itself lapses right after expiry
    upload_id = start(client, b"a" * 100, 200)
    key = store.record_key(upload_id)
    deadline = time.monotonic() + 5
    while store.redis.exists(key) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not store.redis.exists(key)

    result = purge_expired_uploads()

    assert result.expired == 1
    assert not os.path.exists(chunk_file(chunky, upload_id))
    assert expired_ids(signal_log) == [upload_id]
    assert client.get(f"/upload/{upload_id}/").status_code == 404


def test_upload_being_written_is_left_for_the_next_sweep(chunky, store, client, signal_log):
    upload_id = expired_upload(chunky, store, client)
    store.redis.set(store.lock_key(upload_id), "a-request", px=60_000)

    assert purge_expired_uploads().expired == 0
    assert os.path.exists(chunk_file(chunky, upload_id))
    assert store.get(upload_id).status == "uploading"
    assert signal_log == []

    store.release(upload_id, "a-request")
    assert purge_expired_uploads().expired == 1
    assert not os.path.exists(chunk_file(chunky, upload_id))


def test_leftover_file_of_a_finished_upload(chunky, store, queued, client, signal_log):
    chunky.CHUNKY_REDIS_ORPHAN_GRACE = 0
    data = b"d" * 500
    upload_id = start(client, data, 500)
    client.post(
        f"/upload/{upload_id}/",
        data={"md5": hashlib.md5(data).hexdigest()},
        content_type="application/json",
    )
    assert finalize_upload.apply(args=[upload_id]).result == "complete"
    with open(chunk_file(chunky, upload_id), "wb") as f:  # a worker died between two steps
        f.write(data)

    assert purge_expired_uploads().orphans == 1
    assert not os.path.exists(chunk_file(chunky, upload_id))
    assert store.get(upload_id).status == "complete"
    assert expired_ids(signal_log) == []  # it did not expire: it completed


class NoScan:
    """A Redis client that refuses to walk the keyspace."""

    def __init__(self, redis):
        self._redis = redis

    def __getattr__(self, name):
        if name in ("scan", "scan_iter", "keys"):
            raise AssertionError("the sweeper scanned the whole Redis keyspace")
        return getattr(self._redis, name)


def test_sweep_never_scans_redis(chunky, store, client):
    upload_id = expired_upload(chunky, store, client)
    strict = UploadStore(NoScan(store.redis), prefix=store.prefix)
    assert purge_expired_uploads(store=strict).expired == 1
    assert not os.path.exists(chunk_file(chunky, upload_id))


def test_many_expired_uploads_in_batches(chunky, store, client, monkeypatch, signal_log):
    monkeypatch.setattr("chunky_redis.processing.sweeper._BATCH", 3)
    ids = [expired_upload(chunky, store, client) for _ in range(7)]
    assert purge_expired_uploads().expired == 7
    assert expired_ids(signal_log) == sorted(ids)
    assert store.expiries.size() == 0


def test_management_command(chunky, store, client, signal_log):
    upload_id = expired_upload(chunky, store, client)
    out = io.StringIO()
    call_command("purge_expired_uploads", stdout=out)
    assert out.getvalue().strip() == "1 expired upload(s) and 0 orphan file(s) removed"
    assert expired_ids(signal_log) == [upload_id]
    out = io.StringIO()
    call_command("purge_expired_uploads", stdout=out)
    assert out.getvalue().strip() == "0 expired upload(s) and 0 orphan file(s) removed"


def test_periodic_task(chunky, store, client, signal_log):
    upload_id = expired_upload(chunky, store, client)
    assert purge_task.delay().get() == "1 expired upload(s) and 0 orphan file(s) removed"
    assert expired_ids(signal_log) == [upload_id]


def test_beat_schedule_has_the_sweeper():
    app = tasks.app
    app.finalize()
    entry = app.conf.beat_schedule[tasks.celery.SWEEPER]
    assert entry["task"] == "chunky_redis.purge_expired_uploads"
    assert entry["schedule"] == 300.0  # CHUNKY_REDIS_SWEEP_INTERVAL's default, five minutes
    assert entry["task"] in app.tasks
