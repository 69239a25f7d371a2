"""A lock request that reaches Redis after its sender gave up takes no lock.

The freeze tests run their own redis-server on a free port and stop it with
SIGSTOP (never the shared one): commands sent meanwhile wait in the socket and
run when it resumes, as after a stall of the host or a long fork.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid

import pytest
import redis

from chunky_redis import exceptions as exc
from chunky_redis.core.store import Upload, UploadStore
from tests.support.processes import free_port


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of this test's own: (url, process)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (deploy/test-setup.sh installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)]
        + ["--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis.from_url(url, socket_timeout=1).ping():
                break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.02)
    yield url, proc
    os.kill(proc.pid, signal.SIGCONT)  # in case the test failed while it was frozen
    proc.kill()
    proc.wait(10)


def new_upload(store: UploadStore) -> Upload:
    now = store.now()
    upload = Upload(upload_id=uuid.uuid4().hex, size=100, created=now, expires=now + 600_000)
    store.create(upload)
    return upload


def freeze_during(proc: subprocess.Popen, seconds: float, call) -> list:
    """Run ``call`` in a thread while Redis is frozen for ``seconds``; its outcome."""
    outcome: list = []

    def run():
        try:
            outcome.append(call())
        except Exception as e:  # noqa: BLE001 (the outcome is what the test looks at)
            outcome.append(e)

    os.kill(proc.pid, signal.SIGSTOP)
    try:
        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(seconds)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    thread.join(30)
    return outcome


@pytest.mark.live
@pytest.mark.fault
def test_a_lock_request_that_outlived_its_sender_takes_no_lock(private_redis):
    url, proc = private_redis
    # The web worker's client gives up after 1 s: its requests do as well.
    store = UploadStore(redis.Redis.from_url(url, socket_timeout=1), prefix="t")
    assert store.lock_request_timeout_ms == 1000
    upload = new_upload(store)
    assert store.acquire(upload.upload_id, "", "warm-up")[0] == "ok"  # the script is loaded
    store.release(upload.upload_id, "warm-up")

    [outcome] = freeze_during(proc, 3, lambda: store.acquire(upload.upload_id, "", "gave-up"))

    assert isinstance(outcome, exc.StoreUnavailable)  # the sender gave up ...
    fresh = UploadStore(redis.Redis.from_url(url, socket_timeout=5), prefix="t")
    time.sleep(0.2)  # ... and its script, queued in the frozen server, has run by now
    assert fresh.redis.get(fresh.lock_key(upload.upload_id)) is None
    assert fresh.acquire(upload.upload_id, "", "next")[0] == "ok"  # not 409 for 30 s


@pytest.mark.live
@pytest.mark.fault
def test_a_late_answer_to_a_patient_sender_takes_no_lock_either(private_redis):
    url, proc = private_redis
    store = UploadStore(redis.Redis.from_url(url), prefix="t", lock_request_timeout_ms=500)
    upload = new_upload(store)
    assert store.acquire(upload.upload_id, "", "warm-up")[0] == "ok"
    store.release(upload.upload_id, "warm-up")

    [outcome] = freeze_during(proc, 1.5, lambda: store.acquire(upload.upload_id, "", "late"))

    assert outcome == ("late", None)
    assert not store.is_locked(upload.upload_id)


@pytest.mark.live
@pytest.mark.fault
def test_a_chunk_after_a_freeze_is_not_refused_as_locked(private_redis, settings, tmp_path):
    """Through the view: 503 while frozen, and the next attempt is accepted (not 409)."""
    from django.test import Client

    url, proc = private_redis
    settings.CHUNKY_REDIS_REDIS_URL = url + "?socket_timeout=1"
    settings.CHUNKY_REDIS_KEY_PREFIX = "t"
    settings.CHUNKY_REDIS_UPLOAD_DIR = str(tmp_path / "chunks")
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.CHUNKY_REDIS_ALLOW_ANONYMOUS = True
    client = Client()

    def send(start: int):
        return client.put(
            f"/upload/{upload_id}/" if start else "/upload/",
            data=b"x" * 100,
            content_type="application/octet-stream",
            headers={"Content-Range": f"bytes {start}-{start + 99}/300"},
        )

    upload_id = None
    upload_id = send(0).json()["upload_id"]
    assert client.get(f"/upload/{upload_id}/").status_code == 200  # loads the lock script
    [frozen] = freeze_during(proc, 3, lambda: send(100))
    assert frozen.status_code == 503, frozen.json()
    time.sleep(0.2)
    r = send(100)
    assert r.status_code == 200, r.json()
    assert r.json()["offset"] == 200


@pytest.mark.parametrize("skew_s", [-60, 60])
def test_clock_skew_between_hosts_is_learned(backend, skew_s):
    """A web host whose clock is a minute off Redis's still takes locks (and after one
    round trip knows the offset: the deadline is then exact to half a round trip)."""
    import fakeredis

    from tests.support.processes import REAL_REDIS_URL

    client = redis.Redis.from_url(REAL_REDIS_URL) if backend == "redis" else fakeredis.FakeRedis()
    prefix = f"chunky-test-{uuid.uuid4().hex[:12]}"
    store = UploadStore(
        client, prefix=prefix, lock_request_timeout_ms=1000, clock=lambda: time.time() + skew_s
    )
    try:
        upload = new_upload(store)
        assert store.acquire(upload.upload_id, "", "a")[0] == "ok"
        store.release(upload.upload_id, "a")
        assert store.acquire(upload.upload_id, "", "b")[0] == "ok"
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
