"""Post-processing by real ``celery -A tasks worker`` processes, behind the real site (gunicorn).

The broker is the real Redis (db 15, every kombu key under the test's own
prefix) or the RabbitMQ at 127.0.0.1:5672. Receivers in the worker log each
signal to a file that the test reads.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import threading
from pathlib import Path

import pytest
import redis
import requests

from tests.support.processes import (
    REAL_REDIS_URL,
    BeatProcess,
    SiteProcess,
    WorkerProcess,
    live_env,
    read_signals,
    wait_for,
)

pytestmark = [pytest.mark.live, pytest.mark.slow]

RABBITMQ_URL = os.environ.get("CHUNKY_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
CHUNK = 256 * 1024


def payload(size: int) -> bytes:
    return os.urandom(size)


def upload(site: SiteProcess, data: bytes, filename: str = "scan.tiff") -> str:
    """Send ``data`` in chunks over HTTP; returns the upload id (not yet completed)."""
    upload_id = None
    with requests.Session() as http:
        for start in range(0, len(data), CHUNK):
            part = data[start : start + CHUNK]
            url = f"{site.url}/upload/{upload_id}/" if upload_id else f"{site.url}/upload/"
            headers = {
                "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}",
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{filename}"',
            }
            r = http.put(url, data=part, headers=headers, timeout=30)
            assert r.status_code == 200, r.text
            upload_id = r.json()["upload_id"]
    return upload_id


def complete(site: SiteProcess, upload_id: str, data: bytes) -> requests.Response:
    md5 = hashlib.md5(data).hexdigest()
    return requests.post(f"{site.url}/upload/{upload_id}/", json={"md5": md5}, timeout=30)


def status(site: SiteProcess, upload_id: str) -> dict:
    r = requests.get(f"{site.url}/upload/{upload_id}/", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["Cache-Control"] == "no-store"
    return r.json()


def signals_named(env: dict, name: str) -> list[dict]:
    return [s for s in read_signals(env) if s["signal"] == name]


def chunk_path(env: dict, upload_id: str) -> Path:
    return Path(env["CHUNKY_UPLOAD_DIR"]) / f"{upload_id}.part"


def media(env: dict, name: str) -> Path:
    return Path(env["MEDIA_ROOT"]) / name


def dead(pid: int) -> bool:
    """The process is gone, or a zombie nobody reaped yet (its parent was killed too)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def broker_idle(env: dict) -> bool:
    """Nothing waits in this test's queue and no delivered message is unacknowledged."""
    prefix = env["CHUNKY_TEST_QUEUE"] + ":"
    client = redis.Redis.from_url(REAL_REDIS_URL)
    queue = prefix + env["CHUNKY_TEST_QUEUE"]
    return client.llen(queue) == 0 and client.zcard(prefix + "unacked_index") == 0


@pytest.fixture
def redis_env(tmp_path):
    # (tests/conftest.py deletes the keys of every live_env() at the end of the session)
    return live_env(tmp_path)


def _rabbitmq_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def rabbitmq_env(redis_env):
    if not _rabbitmq_available():
        pytest.fail("RabbitMQ does not answer on 127.0.0.1:5672 (the test set-up starts it)")
    redis_env["CELERY_BROKER_URL"] = RABBITMQ_URL
    yield redis_env
    from kombu import Connection

    with Connection(RABBITMQ_URL) as conn:
        conn.default_channel.queue_delete(redis_env["CHUNKY_TEST_QUEUE"])


def check_pipeline(env: dict, *, expect_rename: bool = True) -> None:
    """A full upload through HTTP, finished by a real worker, seen from every side."""
    data = payload(3 * CHUNK + 1234)
    with SiteProcess(env) as site:
        upload_id = upload(site, data)
        assert status(site, upload_id)["status"] == "uploading"
        inode = chunk_path(env, upload_id).stat().st_ino

        # Two clients complete at the same moment: one wins, the other is told why not.
        barrier, answers = threading.Barrier(2), []

        def send():
            barrier.wait()
            answers.append(complete(site, upload_id, data))

        threads = [threading.Thread(target=send) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        codes = sorted(r.status_code for r in answers)
        assert codes[0] == 200 and codes[1] in (400, 409), [r.text for r in answers]
        assert [r.json()["status"] for r in answers if r.status_code == 200] == ["processing"]

        # No worker yet: the upload waits in "processing".
        seen = status(site, upload_id)
        assert seen["status"] == "processing" and "final_name" not in seen

        with WorkerProcess(env) as worker:
            seen = wait_for(
                lambda: (s := status(site, upload_id))["status"] == "complete" and s,
                timeout=30,
                message="status complete",
            )
            wait_for(lambda: signals_named(env, "chunky_upload_complete"), message="the signals")
            if env["CELERY_BROKER_URL"].startswith("redis"):
                wait_for(lambda: broker_idle(env), message="an idle broker")
            assert worker.proc.poll() is None

        final_name = f"chunky_redis/{upload_id}/scan.tiff"
        assert seen["final_name"] == final_name
        assert seen["final_url"] == f"/media/{final_name}"
        assert seen["completed"]
        assert media(env, final_name).read_bytes() == data
        if expect_rename:
            assert media(env, final_name).stat().st_ino == inode
        assert not chunk_path(env, upload_id).exists()

    completed = signals_named(env, "upload_completed")
    assert completed == [
        {
            "signal": "upload_completed",
            "upload_id": upload_id,
            "filename": "scan.tiff",
            "size": len(data),
            "checksum_algorithm": "md5",
            "checksum": hashlib.md5(data).hexdigest(),
            "final_name": final_name,
            "final_url": f"/media/{final_name}",
            "user_id": None,
            "extra": {},
        }
    ]
    [legacy] = signals_named(env, "chunky_upload_complete")
    assert legacy["upload_id"] == upload_id and legacy["completed_on"].startswith("20")
    assert signals_named(env, "upload_failed") == []


def test_pipeline_with_redis_broker(redis_env):
    check_pipeline(redis_env)


def test_pipeline_with_rabbitmq_broker(rabbitmq_env):
    check_pipeline(rabbitmq_env)


@pytest.mark.fault
def test_worker_killed_during_hand_off(redis_env, tmp_path):
    env = dict(
        redis_env,
        CHUNKY_TEST_FINAL_STORAGE="tests.support.receivers.PausingStorage",
        CELERY_VISIBILITY_TIMEOUT="2",  # a lost message comes back after 2 s, not an hour
        CHUNKY_TEST_FINALIZE_LEASE="2",  # and a dead worker's lease lapses as fast
    )
    marker = tmp_path / "paused"
    data = payload(4 * CHUNK)
    with SiteProcess(env) as site:
        upload_id = upload(site, data)
        assert complete(site, upload_id, data).status_code == 200

        doomed = WorkerProcess(dict(env, CHUNKY_TEST_PAUSE_MARKER=str(marker)), name="doomed")
        with doomed:
            wait_for(marker.exists, timeout=30, message="the worker to pause in the hand-off")
            pid = int(marker.read_text().split()[0])
            final = media(env, f"chunky_redis/{upload_id}/scan.tiff")
            assert not final.exists()  # half written, but under a temporary name
            [partial] = list(final.parent.iterdir())
            assert 0 < partial.stat().st_size < len(data)
            assert status(site, upload_id)["status"] == "processing"
            doomed.kill(signal.SIGKILL)  # the whole worker: main process and pool child
        wait_for(lambda: dead(pid), timeout=10, message="the paused pool process to die")
        assert read_signals(env) == []

        with WorkerProcess(env, name="rescuer") as rescuer:
            seen = wait_for(
                lambda: (s := status(site, upload_id))["status"] == "complete" and s,
                timeout=60,
                message="the redelivered task to complete the upload",
            )
            wait_for(lambda: signals_named(env, "chunky_upload_complete"), message="the signals")
            # Let every redelivered copy and retry run out before counting.
            wait_for(lambda: broker_idle(env), timeout=30, message="an idle broker")
            log = rescuer.log_text()

        assert "chunky_redis.finalize_upload" in log
        assert final.read_bytes() == data
        assert [p.name for p in final.parent.iterdir()] == ["scan.tiff"]  # the half file is gone
        assert seen["final_name"] == f"chunky_redis/{upload_id}/scan.tiff"
    assert [s["upload_id"] for s in signals_named(env, "upload_completed")] == [upload_id]
    assert len(signals_named(env, "chunky_upload_complete")) == 1


@pytest.mark.fault
def test_pool_process_killed_during_hand_off(redis_env, tmp_path):
    """Only the pool process dies: the worker rejects the task back to the queue
    (reject_on_worker_lost) and runs it again in a new pool process."""
    marker = tmp_path / "paused"
    env = dict(
        redis_env,
        CHUNKY_TEST_FINAL_STORAGE="tests.support.receivers.PausingStorage",
        CHUNKY_TEST_FINALIZE_LEASE="2",
        CHUNKY_TEST_PAUSE_MARKER=str(marker),
    )
    data = payload(2 * CHUNK)
    with SiteProcess(env) as site, WorkerProcess(env) as worker:
        upload_id = upload(site, data)
        assert complete(site, upload_id, data).status_code == 200
        wait_for(marker.exists, timeout=30, message="the pool process to pause in the hand-off")
        child = int(marker.read_text().split()[0])
        assert child != worker.proc.pid
        os.kill(child, signal.SIGKILL)
        seen = wait_for(
            lambda: (s := status(site, upload_id))["status"] == "complete" and s,
            timeout=60,
            message="the rejected task to run again",
        )
        wait_for(lambda: signals_named(env, "chunky_upload_complete"), message="the signals")
        wait_for(lambda: broker_idle(env), timeout=30, message="an idle broker")
        assert worker.proc.poll() is None
        assert "WorkerLostError" in worker.log_text()
    assert media(env, seen["final_name"]).read_bytes() == data
    assert [s["upload_id"] for s in signals_named(env, "upload_completed")] == [upload_id]


def test_corrupted_stored_bytes_fail_the_upload(redis_env):
    env = dict(redis_env, CHUNKY_TEST_VERIFY_STORED_BYTES="1")
    data = payload(2 * CHUNK)
    with SiteProcess(env) as site:
        upload_id = upload(site, data)
        with open(chunk_path(env, upload_id), "r+b") as f:  # after the last chunk, on disk
            f.seek(CHUNK + 10)
            f.write(bytes([data[CHUNK + 10] ^ 0x01]))
        assert complete(site, upload_id, data).status_code == 200
        with WorkerProcess(env):
            seen = wait_for(
                lambda: (s := status(site, upload_id))["status"] == "failed" and s,
                timeout=30,
                message="status failed",
            )
            failed = wait_for(lambda: signals_named(env, "upload_failed"), message="upload_failed")
    assert "md5 of the stored bytes" in seen["reason"]
    assert hashlib.md5(data).hexdigest() in seen["reason"]
    assert failed == [{"signal": "upload_failed", "upload_id": upload_id, "reason": seen["reason"]}]
    assert signals_named(env, "upload_completed") == []
    assert chunk_path(env, upload_id).exists()  # kept for `manage.py chunky_retry`
    assert not media(env, f"chunky_redis/{upload_id}").exists()


def test_beat_runs_the_sweeper(redis_env):
    env = dict(
        redis_env,
        CHUNKY_TEST_SWEEP_INTERVAL="0.5",
        CHUNKY_EXPIRATION_SECONDS="0.001",  # every upload of this test is born expired
    )
    with SiteProcess(env) as site:
        r = requests.put(
            f"{site.url}/upload/",
            data=b"x" * 100,
            headers={
                "Content-Range": "bytes 0-99/1000",
                "Content-Type": "application/octet-stream",
            },
            timeout=10,
        )
        upload_id = r.json()["upload_id"]
        assert chunk_path(env, upload_id).exists()
        with WorkerProcess(env), BeatProcess(env) as beat:
            expired = wait_for(
                lambda: signals_named(env, "upload_expired"), timeout=30, message="a sweep"
            )
            assert "Sending due task chunky_redis: purge expired uploads" in beat.log_text()
        assert expired == [{"signal": "upload_expired", "upload_id": upload_id}]
        assert not chunk_path(env, upload_id).exists()
        assert requests.get(f"{site.url}/upload/{upload_id}/", timeout=10).status_code == 410
