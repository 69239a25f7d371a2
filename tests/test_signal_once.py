"""Only the finalization that wins processing -> complete sends `upload_completed`.

The finalization lease normally keeps a second worker out, which hides whether
the signal really depends on winning the status change. These tests defeat the
lease: they run the under-lease step twice, and let a second worker in after
the first one's lease was lost (a Redis restart without persistence drops it).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import redis

from chunky_redis.core.store import COMPLETE, FAILED, PROCESSING
from chunky_redis.processing import finalize as finalize_module
from chunky_redis.processing.completion import finalize
from chunky_redis.processing.finalize import _finalize_under_lease
from chunky_redis.runtime import get_storage
from tests.support.api import LiveApi
from tests.support.processes import (
    SiteProcess,
    WorkerProcess,
    live_env,
    queue_finalize,
    read_signals,
    wait_for,
)
from tests.test_finalize import complete, named, payload, put_chunks


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def processing(chunky, store, client, monkeypatch):
    """An upload verified and waiting for its finalization task (which does not run)."""
    queued: list[str] = []
    monkeypatch.setattr("chunky_redis.processing.completion.enqueue_finalize", queued.append)
    data = payload(5000)
    upload_id = put_chunks(client, data)
    assert complete(client, upload_id, data).status_code == 200
    assert queued == [upload_id]
    upload = store.get(upload_id)
    assert upload.status == PROCESSING
    return upload


def test_a_repeated_step_under_the_lease_signals_nothing_more(store, processing, signal_log):
    stale = store.get(processing.upload_id)  # what a second worker read while it was processing
    first = _finalize_under_lease(processing, store, get_storage())
    second = _finalize_under_lease(stale, store, get_storage())
    assert (first.status, second.status, second.reason) == (COMPLETE, "skipped", COMPLETE)
    assert [s["upload_id"] for s in named(signal_log, "upload_completed")] == [processing.upload_id]
    assert len(named(signal_log, "chunky_upload_complete")) == 1


def test_a_failing_step_after_completion_signals_nothing(store, processing, signal_log):
    """A late worker that sees no bytes (the winner moved them) must not fail the upload."""
    stale = store.get(processing.upload_id)
    _finalize_under_lease(processing, store, get_storage())
    storage = get_storage()
    storage.delete(processing.upload_id)  # nothing left in the upload directory either way
    outcome = finalize_module._fail(stale, store, "late", "task-2")
    assert outcome.status == "skipped"
    assert store.get(processing.upload_id).status == COMPLETE
    assert named(signal_log, "upload_failed") == []


def test_two_steps_racing_to_the_status_change_signal_once(
    store, processing, signal_log, monkeypatch
):
    """Worker A hands the file off; worker B, started then, finds it at its final name;
    both reach the status change at the same moment."""
    barrier = threading.Barrier(2, timeout=10)
    real_transition, real_hand_off = store.transition, finalize_module._hand_off
    handed_off = threading.Event()

    def together(*args, **kwargs):
        if args[2] == COMPLETE:
            barrier.wait()
        return real_transition(*args, **kwargs)

    def hand_off(*args):
        stored = real_hand_off(*args)
        handed_off.set()
        return stored

    monkeypatch.setattr(store, "transition", together)
    monkeypatch.setattr(finalize_module, "_hand_off", hand_off)
    outcomes: list[str] = []

    def worker() -> None:
        upload = store.get(processing.upload_id)
        outcomes.append(_finalize_under_lease(upload, store, get_storage()).status)

    a, b = threading.Thread(target=worker), threading.Thread(target=worker)
    a.start()
    assert handed_off.wait(10)
    b.start()
    for w in (a, b):
        w.join(20)
    assert sorted(outcomes) == [COMPLETE, "skipped"]
    assert len(named(signal_log, "upload_completed")) == 1
    assert len(named(signal_log, "chunky_upload_complete")) == 1


def test_a_worker_whose_lease_was_lost_signals_nothing(
    chunky, store, processing, signal_log, monkeypatch
):
    """Worker A hands the file off and stalls; its lease is lost; worker B finalizes;
    A wakes up and reaches the status change second."""
    upload_id = processing.upload_id
    handed_off, resume = threading.Event(), threading.Event()
    real = finalize_module._hand_off

    def stall_after_hand_off(path, final, name):
        stored = real(path, final, name)
        handed_off.set()
        resume.wait(10)
        return stored

    monkeypatch.setattr(finalize_module, "_hand_off", stall_after_hand_off)
    results: list[str] = []
    a = threading.Thread(target=lambda: results.append(finalize(upload_id).status))
    a.start()
    assert handed_off.wait(10)
    store.redis.delete(store.lease_key(upload_id))  # the lease is gone (Redis restarted empty)
    # Worker B takes a fresh lease; the file is already at its final name, so it only
    # records the completion (B never hands off, so it never stalls).
    assert finalize(upload_id).status == COMPLETE
    resume.set()
    a.join(10)
    assert results == ["skipped"]
    assert store.get(upload_id).status == COMPLETE
    sent = named(signal_log, "upload_completed")
    assert [s["upload_id"] for s in sent] == [upload_id]
    assert len(named(signal_log, "chunky_upload_complete")) == 1
    assert named(signal_log, "upload_failed") == []


def test_a_failure_is_signalled_once_too(store, processing, signal_log):
    stale = store.get(processing.upload_id)
    assert finalize_module._fail(processing, store, "first", "task-1").status == FAILED
    assert finalize_module._fail(stale, store, "second", "task-2").status == "skipped"
    assert named(signal_log, "upload_failed") == [
        {"upload_id": processing.upload_id, "reason": "first"}
    ]


@pytest.mark.slow
def test_real_workers_past_a_lost_lease_signal_once(tmp_path):
    """Real processes: worker child A hands the file off and stalls before the status
    change (GatedUrlStorage); its lease is lost; the task is delivered again and child B
    finishes the upload; then A goes on, loses the status change and sends nothing."""
    gate = tmp_path / "gate"
    gate.mkdir()
    env = live_env(
        tmp_path,
        CHUNKY_TEST_FINAL_STORAGE="tests.support.receivers.GatedUrlStorage",
        CHUNKY_TEST_GATE_DIR=str(gate),
    )
    data = payload(300_000)
    with SiteProcess(env, workers=1) as site, WorkerProcess(env, concurrency=2) as worker:
        api = LiveApi(site.url)
        reply = api.put("/upload/", data, content_range=f"bytes 0-{len(data) - 1}/{len(data)}")
        assert reply.status == 200, reply.body
        upload_id = reply.data["upload_id"]
        assert api.post_json(f"/upload/{upload_id}/", {"md5": md5(data)}).status == 200
        wait_for(lambda: (gate / "paused").exists(), message="worker A to stall")
        prefix = env["CHUNKY_TEST_KEY_PREFIX"]
        client = redis.Redis.from_url(env["REDIS_URL"])
        assert client.delete(f"{prefix}:{{{upload_id}}}:finalize") == 1  # A's lease is lost
        queue_finalize(env, upload_id)
        done = wait_for(
            lambda: (s := api.get(f"/upload/{upload_id}/").data)["status"] == "complete" and s,
            message="worker B to complete the upload",
        )
        (gate / "resume").touch()
        # A finishes its task: "skipped", since B already moved the status.
        wait_for(
            lambda: worker.log_text().count("succeeded") >= 2,
            message="both deliveries to finish",
        )
        assert "'skipped'" in worker.log_text() and "'complete'" in worker.log_text()
    completed = [s for s in read_signals(env) if s["signal"] == "upload_completed"]
    assert [s["upload_id"] for s in completed] == [upload_id]
    assert (Path(env["MEDIA_ROOT"]) / done["final_name"]).read_bytes() == data
