"""Only the finalization that wins processing -> complete sends `upload_completed`.

The finalization lease normally keeps a second worker out, which hides whether
the signal really depends on winning the status change. These tests defeat the
lease: they run the under-lease step twice, and let a second worker in after
the first one's lease was lost (a Redis restart without persistence drops it).
"""

from __future__ import annotations

import threading

import pytest

from chunky_redis import finalize as finalize_module
from chunky_redis.finalize import _finalize_under_lease, finalize
from chunky_redis.runtime import get_storage
from chunky_redis.store import COMPLETE, FAILED, PROCESSING
from tests.test_finalize import complete, named, payload, put_chunks


@pytest.fixture
def processing(chunky, store, client, monkeypatch):
    """An upload verified and waiting for its finalization task (which does not run)."""
    queued: list[str] = []
    monkeypatch.setattr("chunky_redis.completion.enqueue_finalize", queued.append)
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
    outcome = finalize_module._fail(stale, store, storage, "late")
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
    storage = get_storage()
    assert finalize_module._fail(processing, store, storage, "first").status == FAILED
    assert finalize_module._fail(stale, store, storage, "second").status == "skipped"
    assert named(signal_log, "upload_failed") == [
        {"upload_id": processing.upload_id, "reason": "first"}
    ]
