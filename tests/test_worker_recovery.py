"""Recovery by real ``celery -A tasks worker`` (and beat) processes behind the real site.

A hand-off that was lost (the completion's reply lost, a web worker killed
between marking and queueing) is queued again by the sweeper; a worker killed
mid-hand-off costs the finalization lease (30 s by default), not ten minutes,
and never shows a half-copied file at the final name.
"""

from __future__ import annotations

import hashlib
import signal
import time

import pytest
import redis

from chunky_redis.core.store import PROCESSING, UploadStore
from tests.support.processes import REAL_REDIS_URL, SiteProcess, WorkerProcess, live_env, wait_for
from tests.test_worker import (
    CHUNK,
    BeatProcess,
    broker_idle,
    chunk_path,
    complete,
    dead,
    media,
    payload,
    signals_named,
    status,
    upload,
)

pytestmark = [pytest.mark.live, pytest.mark.slow]


@pytest.fixture
def env(tmp_path):
    return live_env(tmp_path)


def test_sweeper_requeues_a_lost_hand_off(env):
    env = dict(env, CHUNKY_TEST_SWEEP_INTERVAL="0.5", CHUNKY_REQUEUE_AFTER_SECONDS="1")
    data = payload(3 * CHUNK)
    with SiteProcess(env) as site:
        upload_id = upload(site, data)
        # The completion's script ran in Redis, but no task was ever queued: its reply
        # was lost, or the web worker died before queueing.
        store = UploadStore(
            redis.Redis.from_url(REAL_REDIS_URL), prefix=env["CHUNKY_TEST_KEY_PREFIX"]
        )
        code, record = store.acquire(upload_id, "", "lost-request")
        assert code == "ok"
        assert store.mark_processing(record, "lost-request", hashlib.md5(data).hexdigest()) == "ok"
        assert status(site, upload_id)["status"] == PROCESSING

        with WorkerProcess(env), BeatProcess(env):
            seen = wait_for(
                lambda: (s := status(site, upload_id))["status"] == "complete" and s,
                timeout=60,
                message="the sweeper to queue the upload again",
            )
            wait_for(lambda: signals_named(env, "chunky_upload_complete"), message="the signals")
            time.sleep(2)  # more sweeps: none may queue it again once complete
            wait_for(lambda: broker_idle(env), timeout=30, message="an idle broker")
        assert media(env, seen["final_name"]).read_bytes() == data
    assert [s["upload_id"] for s in signals_named(env, "upload_completed")] == [upload_id]


def test_a_retried_completion_requeues_a_lost_hand_off(env):
    env = dict(env, CHUNKY_REQUEUE_AFTER_SECONDS="0.5")
    data = payload(2 * CHUNK)
    with SiteProcess(env) as site, WorkerProcess(env):
        upload_id = upload(site, data)
        store = UploadStore(
            redis.Redis.from_url(REAL_REDIS_URL), prefix=env["CHUNKY_TEST_KEY_PREFIX"]
        )
        code, record = store.acquire(upload_id, "", "lost-request")
        assert store.mark_processing(record, "lost-request", hashlib.md5(data).hexdigest()) == "ok"
        time.sleep(0.6)
        r = complete(site, upload_id, data)  # the client retries after its 503
        assert r.status_code == 200 and r.json()["status"] == PROCESSING, r.text
        wait_for(
            lambda: status(site, upload_id)["status"] == "complete",
            timeout=30,
            message="the requeued task to complete it",
        )
        wait_for(lambda: signals_named(env, "chunky_upload_complete"), message="the signals")
    assert [s["upload_id"] for s in signals_named(env, "upload_completed")] == [upload_id]


@pytest.mark.fault
def test_a_killed_worker_costs_the_default_lease_not_ten_minutes(env, tmp_path):
    """No lease setting here: the default (30 s, renewed every 10 s) is what a dead worker costs."""
    env = dict(
        env,
        CHUNKY_TEST_FINAL_STORAGE="tests.support.receivers.PausingStorage",
        CELERY_VISIBILITY_TIMEOUT="2",  # a lost message comes back after 2 s
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
            folder = media(env, f"chunky_redis/{upload_id}")
            final = folder / "scan.tiff"
            assert not final.exists()  # half copied, but not at the final name
            [partial] = list(folder.iterdir())
            assert partial.name.startswith(".") and 0 < partial.stat().st_size < len(data)
            doomed.kill(signal.SIGKILL)
            killed_at = time.monotonic()
        wait_for(lambda: dead(pid), timeout=10, message="the paused pool process to die")

        with WorkerProcess(env, name="rescuer"):
            wait_for(
                lambda: status(site, upload_id)["status"] == "complete",
                timeout=90,
                message="the redelivered task to complete the upload",
            )
            took = time.monotonic() - killed_at
            wait_for(lambda: broker_idle(env), timeout=30, message="an idle broker")
        assert took < 45, took  # the 30 s lease and a retry, not the old 10 minutes
        assert final.read_bytes() == data
        assert [p.name for p in folder.iterdir()] == ["scan.tiff"]  # no leftover
        assert not chunk_path(env, upload_id).exists()
    assert [s["upload_id"] for s in signals_named(env, "upload_completed")] == [upload_id]
