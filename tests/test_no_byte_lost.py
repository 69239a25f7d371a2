"""No byte lost, by construction (issue 8, part 3), on fakeredis and on the real Redis.

Each test stages one of the faults that lost or corrupted uploads: the sweeper
taking the file of a new upload whose first chunk still streams, an append that
recreated a vanished file as a hole, a completion whose queueing was lost, a
half-copied file at its final name, a failed finalization that deleted the
bytes, and a filename the final storage refuses.
"""

from __future__ import annotations

import hashlib
import io
import os
import time

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.management import CommandError, call_command
from django.test import Client

import tasks  # noqa: F401  (the bundled Celery app: eager, configured from tests/settings.py)
from chunky_redis import exceptions as exc
from chunky_redis import runtime
from chunky_redis.core.http import ByteRange
from chunky_redis.core.store import COMPLETE, FAILED, PROCESSING, Upload, UploadStore
from chunky_redis.processing.completion import finalize, purge_expired_uploads
from chunky_redis.processing.finalize import FinalizeBusy
from chunky_redis.processing.handoff import TEMP_SUFFIX
from chunky_redis.tasks import finalize_upload


@pytest.fixture
def queued(chunky, monkeypatch):
    """Completions are recorded here instead of running the task."""
    ids: list[str] = []
    monkeypatch.setattr("chunky_redis.processing.completion.enqueue_finalize", ids.append)
    return ids


def put(client: Client, data: bytes, start: int, total: int, upload_id=None, name="f.bin"):
    url = f"/upload/{upload_id}/" if upload_id else f"/upload/?filename={name}"
    return client.put(
        url,
        data=data,
        content_type="application/octet-stream",
        headers={"Content-Range": f"bytes {start}-{start + len(data) - 1}/{total}"},
    )


def complete(client: Client, upload_id: str, data: bytes):
    return client.post(
        f"/upload/{upload_id}/",
        data={"md5": hashlib.md5(data).hexdigest()},
        content_type="application/json",
    )


def chunk_file(chunky, upload_id: str) -> str:
    return os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part")


def age(path: str, seconds: float = 7200) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def until_gone(store: UploadStore, key: str) -> None:
    deadline = time.monotonic() + 5
    while store.redis.exists(key) and time.monotonic() < deadline:
        time.sleep(0.001)
    assert not store.redis.exists(key)


# -- 1. an upload's file exists only while its record or creation marker does ------------


def test_an_append_never_creates_the_file(chunky, store, client, caplog):
    data = os.urandom(200)
    upload_id = put(client, data[:100], 0, 200).json()["upload_id"]
    os.unlink(chunk_file(chunky, upload_id))  # the file vanished (a sweeper, an operator)

    r = put(client, data[100:], 100, 200, upload_id)

    assert r.status_code == 410 and r.json()["code"] == "upload_lost", r.json()
    assert not os.path.exists(chunk_file(chunky, upload_id))  # no hole-filled file appeared
    assert store.get(upload_id).offset == 100  # not advanced
    assert not store.is_locked(upload_id)
    assert (
        f"the chunk file of upload {upload_id} is missing" in caplog.text
    )  # loud, for the operator


def test_an_append_to_a_truncated_file_is_refused(chunky, store, client):
    upload_id = put(client, b"a" * 100, 0, 200).json()["upload_id"]
    os.truncate(chunk_file(chunky, upload_id), 40)

    r = put(client, b"b" * 100, 100, 200, upload_id)

    assert r.status_code == 410 and r.json()["code"] == "upload_lost"
    assert os.path.getsize(chunk_file(chunky, upload_id)) == 40
    assert store.get(upload_id).offset == 100


def new_session(length: int, total: int):
    service = runtime.get_service()
    return service.start_chunk(
        owner="",
        upload_id=None,
        byte_range=ByteRange(0, length - 1, total),
        length=length,
        max_bytes=None,
    )


def test_sweeper_spares_a_first_chunk_still_streaming(chunky, store, client, queued):
    """The silent corruption: the file of a new upload, older than the orphan grace and
    without a record yet, was taken for an orphan while its first chunk streamed."""
    chunky.CHUNKY_REDIS_ORPHAN_GRACE = 0  # whatever the grace
    data = os.urandom(300)
    session = new_session(200, 300)
    session.write(data[:100])
    age(chunk_file(chunky, session.upload_id))
    assert store.get(session.upload_id) is None  # no record yet: only the creation marker

    assert purge_expired_uploads().orphans == 0

    assert os.path.exists(chunk_file(chunky, session.upload_id))
    session.write(data[100:200])
    upload = session.finish(filename="f.bin")
    assert not store.is_locked(upload.upload_id)  # the marker went with the record's creation
    assert put(client, data[200:], 200, 300, upload.upload_id).status_code == 200
    assert complete(client, upload.upload_id, data).status_code == 200
    assert finalize_upload.apply(args=[upload.upload_id]).result == COMPLETE
    final = store.get(upload.upload_id).final_name
    with open(os.path.join(chunky.MEDIA_ROOT, final), "rb") as f:
        assert f.read() == data


def test_a_first_chunk_whose_marker_lapsed_is_not_recorded(chunky, store, signal_log):
    """A writer stalled past the lock timeout lost its marker; the sweeper may then take
    the file, and the upload must not come into being without its first bytes."""
    chunky.CHUNKY_REDIS_ORPHAN_GRACE = 0
    chunky.CHUNKY_REDIS_LOCK_TIMEOUT = 0.05
    session = new_session(100, 100)
    session.write(b"x" * 50)
    until_gone(store, store.lock_key(session.upload_id))

    assert purge_expired_uploads().orphans == 1
    with pytest.raises(exc.LockLost):  # the heartbeat notices before the next write
        session.write(b"y" * 50)
    session.abort()
    assert store.get(session.upload_id) is None
    assert not os.path.exists(chunk_file(chunky, session.upload_id))


def test_the_creation_marker_is_renewed_while_the_first_chunk_streams(chunky, store):
    chunky.CHUNKY_REDIS_LOCK_TIMEOUT = 0.06
    session = new_session(100, 100)
    for _ in range(10):  # a slow client: 0.2 s in all, over three marker lifetimes
        time.sleep(0.02)
        session.write(b"z" * 10)
    upload = session.finish(filename="slow.bin")
    assert store.get(upload.upload_id).offset == 100


def test_a_lapsed_creation_marker_creates_no_record(store):
    """Even a writer that never wrote again after its marker lapsed cannot create the record."""
    upload = Upload(upload_id=os.urandom(16).hex(), size=10, expires=store.now() + 60_000)
    assert store.claim_new(upload.upload_id, "t")
    store.redis.delete(store.lock_key(upload.upload_id))  # lapsed
    assert store.create(upload, "t") == "lost"
    assert store.get(upload.upload_id) is None
    assert store.claim_new(upload.upload_id, "u")
    assert store.create(upload, "u") == "ok"
    assert not store.is_locked(upload.upload_id)  # the marker went in the same step


def test_a_lost_reply_to_the_creation_keeps_the_file(chunky, store, client, monkeypatch):
    """The record was created but its reply lost: the file must not go, or the record
    would name bytes that no longer exist."""
    real = UploadStore.create
    created: list[str] = []

    def created_then_lost(self, upload, token=""):
        real(self, upload, token)
        created.append(upload.upload_id)
        raise exc.StoreUnavailable("Redis is unavailable: Timeout reading from socket")

    monkeypatch.setattr(UploadStore, "create", created_then_lost)
    assert put(client, b"a" * 100, 0, 200).status_code == 503
    [upload_id] = created
    assert store.get(upload_id).offset == 100
    assert os.path.getsize(chunk_file(chunky, upload_id)) == 100


def test_sweeper_spares_a_locked_upload_whatever_its_status(chunky, store, queued, client):
    chunky.CHUNKY_REDIS_ORPHAN_GRACE = 0
    data = b"d" * 100
    upload_id = put(client, data, 0, 100).json()["upload_id"]
    complete(client, upload_id, data)
    assert finalize_upload.apply(args=[upload_id]).result == COMPLETE
    with open(chunk_file(chunky, upload_id), "wb") as f:  # a request writes it (say)
        f.write(data)
    store.redis.set(store.lock_key(upload_id), "a-request", px=60_000)

    assert purge_expired_uploads().orphans == 0
    assert os.path.exists(chunk_file(chunky, upload_id))


def test_a_failed_upload_keeps_its_bytes_through_sweeps(chunky, store, queued, client):
    chunky.CHUNKY_REDIS_ORPHAN_GRACE = 0
    upload_id = put(client, b"a" * 100, 0, 100).json()["upload_id"]
    complete(client, upload_id, b"a" * 100)
    store.transition(upload_id, PROCESSING, FAILED, reason="test")
    age(chunk_file(chunky, upload_id))

    assert purge_expired_uploads().orphans == 0
    assert os.path.exists(chunk_file(chunky, upload_id))


# -- 2. a completion whose queueing is in doubt is recoverable ------------------------------


class ReplyLost(Exception):
    pass


def lose_the_reply(monkeypatch):
    """MARK_PROCESSING runs in Redis, but its reply never reaches the web worker."""
    real = UploadStore.mark_processing

    def marked_then_lost(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise exc.StoreUnavailable("Redis is unavailable: Timeout reading from socket")

    monkeypatch.setattr(UploadStore, "mark_processing", marked_then_lost)


def stuck_upload(chunky, store, client, monkeypatch, data: bytes) -> str:
    upload_id = put(client, data, 0, len(data)).json()["upload_id"]
    with monkeypatch.context() as m:
        lose_the_reply(m)
        r = complete(client, upload_id, data)
    assert r.status_code == 503
    assert store.get(upload_id).status == PROCESSING
    return upload_id


def test_a_retried_completion_requeues_a_lost_hand_off(
    chunky, store, queued, client, monkeypatch, signal_log
):
    data = os.urandom(500)
    upload_id = stuck_upload(chunky, store, client, monkeypatch, data)
    assert queued == []  # nothing was queued: before the fix, stuck forever

    # Right after, the first hand-off may still be on its way: not doubled.
    r = complete(client, upload_id, data)
    assert r.status_code == 400 and r.json()["code"] == "already_complete"
    assert queued == []

    chunky.CHUNKY_REDIS_REQUEUE_AFTER = 0.001
    time.sleep(0.005)
    r = complete(client, upload_id, data)
    assert r.status_code == 200, r.json()
    assert r.json()["status"] == PROCESSING and r.json()["upload_id"] == upload_id
    assert queued == [upload_id]
    # A wrong checksum is not the same completion: it queues nothing.
    r = client.post(
        f"/upload/{upload_id}/", data={"md5": "0" * 32}, content_type="application/json"
    )
    assert r.status_code == 400 and queued == [upload_id]

    assert finalize_upload.apply(args=[upload_id]).result == COMPLETE
    assert finalize_upload.apply(args=[upload_id]).result == "skipped"  # a doubled task
    assert [k["upload_id"] for n, k in signal_log if n == "upload_completed"] == [upload_id]
    assert not store.processing.score(upload_id)


def test_no_requeue_while_a_worker_holds_the_lease(chunky, store, queued, client, monkeypatch):
    chunky.CHUNKY_REDIS_REQUEUE_AFTER = 0.001
    data = os.urandom(300)
    upload_id = stuck_upload(chunky, store, client, monkeypatch, data)
    assert store.take_lease(upload_id, "a-worker", 60_000)
    time.sleep(0.005)

    assert complete(client, upload_id, data).json()["code"] == "already_complete"
    assert purge_expired_uploads().requeued == 0
    assert queued == []

    # The worker dies: its lease is no longer renewed and lapses; the next sweep takes over.
    store.redis.pexpire(store.lease_key(upload_id), 1)
    until_gone(store, store.lease_key(upload_id))
    assert purge_expired_uploads().requeued == 1
    assert queued == [upload_id]


def test_a_worker_killed_between_marking_and_queueing(chunky, store, queued, client, monkeypatch):
    """The web worker dies after the status moved and before the task was queued."""

    class Killed(BaseException):
        pass

    def killed(upload_id):
        raise Killed()

    data = os.urandom(300)
    upload_id = put(client, data, 0, 300).json()["upload_id"]
    monkeypatch.setattr("chunky_redis.processing.completion.enqueue_finalize", killed)
    with pytest.raises(Killed):
        complete(client, upload_id, data)
    monkeypatch.setattr("chunky_redis.processing.completion.enqueue_finalize", queued.append)
    assert store.get(upload_id).status == PROCESSING

    chunky.CHUNKY_REDIS_REQUEUE_AFTER = 3600
    assert purge_expired_uploads().requeued == 0  # queued moments ago: not doubled
    chunky.CHUNKY_REDIS_REQUEUE_AFTER = 0.001
    time.sleep(0.005)
    result = purge_expired_uploads()
    assert result.requeued == 1 and queued == [upload_id]
    assert "1 upload(s) queued again" in str(result)
    assert finalize_upload.apply(args=[upload_id]).result == COMPLETE
    time.sleep(0.005)
    assert purge_expired_uploads().requeued == 0
    assert store.processing.size() == 0  # dropped once complete


def test_sweeper_drops_index_entries_that_never_reached_processing(chunky, store, queued, client):
    chunky.CHUNKY_REDIS_REQUEUE_AFTER = 0.001
    upload_id = put(client, b"a" * 10, 0, 20).json()["upload_id"]
    for lost in (upload_id, "f" * 32):  # lost cleanups
        store.processing.add(lost, 1)
    assert purge_expired_uploads().requeued == 0
    assert store.processing.size() == 0 and queued == []


# -- 3. the final name shows a file only when whole ------------------------------------------


class BreaksMidCopy(FileSystemStorage):
    """A storage saved through (it customises _save): the first save dies half-way."""

    broken = 0

    def _save(self, name, content):
        if BreaksMidCopy.broken:
            return super()._save(name, content)
        BreaksMidCopy.broken += 1
        full = self.path(name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(content.read(content.size // 2))
        raise SystemExit("worker killed mid-copy")


def test_a_half_copied_file_never_shows_at_its_final_name(chunky, store, queued, client):
    chunky.CHUNKY_REDIS_FINAL_STORAGE = f"{__name__}.BreaksMidCopy"
    BreaksMidCopy.broken = 0
    data = os.urandom(10_000)
    upload_id = put(client, data, 0, len(data), name="movie.mp4").json()["upload_id"]
    complete(client, upload_id, data)
    folder = os.path.join(chunky.MEDIA_ROOT, "chunky_redis", upload_id)

    with pytest.raises(SystemExit):
        finalize(upload_id)
    assert not os.path.exists(os.path.join(folder, "movie.mp4"))
    [leftover] = os.listdir(folder)
    assert leftover.endswith(TEMP_SUFFIX) and leftover.startswith(".")
    assert os.path.getsize(os.path.join(folder, leftover)) == len(data) // 2

    assert finalize_upload.apply(args=[upload_id]).result == COMPLETE
    assert os.listdir(folder) == ["movie.mp4"]  # the dead attempt's leftover is gone
    with open(os.path.join(folder, "movie.mp4"), "rb") as f:
        assert f.read() == data


# -- 4. a failed finalization keeps the bytes, and can be retried ----------------------------


def failed_upload(chunky, store, client, data: bytes) -> str:
    chunky.CHUNKY_REDIS_VERIFY_STORED_BYTES = True
    upload_id = put(client, data, 0, len(data)).json()["upload_id"]
    with open(chunk_file(chunky, upload_id), "r+b") as f:  # the disk flips a byte
        f.write(bytes([data[0] ^ 1]))
    complete(client, upload_id, data)
    assert finalize_upload.apply(args=[upload_id]).result == FAILED
    assert os.path.exists(chunk_file(chunky, upload_id))
    return upload_id


def test_chunky_retry_finalizes_a_failed_upload_again(chunky, store, queued, client, signal_log):
    data = os.urandom(1000)
    upload_id = failed_upload(chunky, store, client, data)
    assert store.failed_ids() == [upload_id]
    with open(chunk_file(chunky, upload_id), "r+b") as f:  # the operator repairs the disk
        f.write(data[:1])

    out = io.StringIO()
    call_command("chunky_retry", upload_id, stdout=out)

    assert out.getvalue().strip() == f"{upload_id}: queued"
    assert queued[-1] == upload_id
    upload = store.get(upload_id)
    assert upload.status == PROCESSING and upload.reason == ""
    assert finalize_upload.apply(args=[upload_id]).result == COMPLETE
    with open(os.path.join(chunky.MEDIA_ROOT, store.get(upload_id).final_name), "rb") as f:
        assert f.read() == data
    assert store.failed_ids() == []
    with pytest.raises(CommandError):  # no longer failed
        call_command("chunky_retry", upload_id, stdout=io.StringIO())


def test_chunky_retry_all_failed(chunky, store, queued, client):
    ids = sorted(failed_upload(chunky, store, client, os.urandom(100)) for _ in range(2))
    queued.clear()
    out = io.StringIO()
    call_command("chunky_retry", "--all-failed", stdout=out)
    assert sorted(queued) == ids
    assert sorted(out.getvalue().split()) == sorted(f"{i}:" for i in ids) + ["queued"] * 2
    with pytest.raises(CommandError):
        call_command("chunky_retry", stdout=io.StringIO())  # neither ids nor --all-failed


def test_chunky_retry_without_bytes_says_so(chunky, store, queued, client):
    upload_id = failed_upload(chunky, store, client, os.urandom(100))
    os.unlink(chunk_file(chunky, upload_id))
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("chunky_retry", upload_id, stdout=out)
    assert out.getvalue().strip() == f"{upload_id}: no_bytes"
    assert store.get(upload_id).status == FAILED


# -- 5. no filename can fail an upload -------------------------------------------------------


def finish(client, store, data: bytes, name: str):
    upload_id = put(client, data, 0, len(data), name=name).json()["upload_id"]
    assert complete(client, upload_id, data).status_code == 200
    assert finalize_upload.apply(args=[upload_id]).result == COMPLETE
    return store.get(upload_id)


def test_a_long_non_ascii_filename_completes(chunky, store, queued, client):
    from urllib.parse import quote

    name = "é" * 196 + ".txt"  # 200 characters, 396 bytes
    data = os.urandom(1000)
    upload = finish(client, store, data, quote(name))
    assert upload.filename == "é" * 125 + ".txt"  # cut to 255 bytes, not characters
    basename = os.path.basename(upload.final_name)
    assert basename.endswith(".txt") and basename.startswith("éé")
    assert len(basename.encode()) <= 200
    with open(os.path.join(chunky.MEDIA_ROOT, upload.final_name), "rb") as f:
        assert f.read() == data


def test_a_name_the_storage_refuses_falls_back_to_a_safe_one(
    chunky, store, queued, client, monkeypatch
):
    """eCryptfs, for one, allows names of 143 bytes only: ENAMETOOLONG on a name that
    fits everywhere else."""
    import errno

    real = os.replace

    def short_names_only(src, dst):
        if len(os.path.basename(dst).encode()) > 143:
            raise OSError(errno.ENAMETOOLONG, "File name too long", dst)
        return real(src, dst)

    monkeypatch.setattr("chunky_redis.processing.handoff.os.replace", short_names_only)
    data = os.urandom(1000)
    upload = finish(client, store, data, "x" * 180 + ".pdf")
    assert upload.final_name == f"chunky_redis/{upload.upload_id}/upload.pdf"
    with open(os.path.join(chunky.MEDIA_ROOT, upload.final_name), "rb") as f:
        assert f.read() == data
    assert not os.path.exists(chunk_file(chunky, upload.upload_id))


class Unwritable(FileSystemStorage):
    def _save(self, name, content):
        raise PermissionError(13, "Permission denied", self.path(name))


def test_no_reason_carries_a_server_path(chunky, store, queued, client):
    chunky.CHUNKY_REDIS_FINAL_STORAGE = f"{__name__}.Unwritable"
    chunky.CHUNKY_REDIS_FINALIZE_MAX_RETRIES = 1
    data = os.urandom(100)
    upload_id = put(client, data, 0, 100).json()["upload_id"]
    complete(client, upload_id, data)
    assert finalize_upload.apply(args=[upload_id]).result == FAILED
    reason = client.get(f"/upload/{upload_id}/").json()["reason"]
    assert "Permission denied" in reason
    assert chunky.MEDIA_ROOT not in reason and "/" not in reason, reason


# -- 6. the finalization lease ---------------------------------------------------------------


def test_busy_retry_comes_when_the_lease_would_lapse(chunky, store, queued, client):
    chunky.CHUNKY_REDIS_FINALIZE_LEASE = 20
    data = os.urandom(100)
    upload_id = put(client, data, 0, 100).json()["upload_id"]
    complete(client, upload_id, data)
    assert store.take_lease(upload_id, "a-dead-worker", 4_000)
    with pytest.raises(FinalizeBusy) as caught:
        finalize(upload_id)
    assert 3.0 < caught.value.retry_in <= 4.5  # the holder's lease, not a guess from settings


@pytest.mark.live  # imports the site's settings in a process of its own
def test_the_bundled_site_reads_the_lease_and_friends_from_the_environment():
    import subprocess
    import sys

    from tests.support.processes import REPO

    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="chunky_site.settings",
        PYTHONPATH=os.pathsep.join([str(REPO / "deploy"), str(REPO)]),
        DEBUG="1",
        CHUNKY_FINALIZE_LEASE_SECONDS="7",
        CHUNKY_REQUEUE_AFTER_SECONDS="9",
        CHUNKY_LOCK_REQUEST_TIMEOUT_SECONDS="2.5",
    )
    code = (
        "import django; django.setup(); from chunky_redis.conf import conf; "
        "print(conf.FINALIZE_LEASE.total_seconds(), conf.REQUEUE_AFTER.total_seconds(), "
        "conf.LOCK_REQUEST_TIMEOUT.total_seconds())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["7.0", "9.0", "2.5"], out.stderr


@pytest.mark.parametrize("name", ["FINALIZE_LEASE", "REQUEUE_AFTER", "LOCK_REQUEST_TIMEOUT"])
@pytest.mark.parametrize("value", [0, -5, "1 day"])
def test_e003_covers_the_new_durations(settings, name, value):
    from django.core.checks import run_checks

    setattr(settings, "CHUNKY_REDIS_" + name, value)
    assert "chunky_redis.E003" in [m.id for m in run_checks()]
