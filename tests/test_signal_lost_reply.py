"""The signals of a finished upload go out once even when a reply from Redis is lost.

A black-holed link after the script that moves processing -> complete (or
failed) ran: the worker sees a timeout, the task retries, and finds the upload
already finished. The retry of the run that finished it sends the signals; any
other run never does. The loss is made by a script that runs and then raises
the ConnectionError a dead link gives (fakeredis and the real Redis);
test_signal_lost_reply_live.py does it in a real worker process.
"""

from __future__ import annotations

import pytest
import redis

from chunky_redis import runtime
from chunky_redis.core.errors import StoreUnavailable
from chunky_redis.core.store import COMPLETE, FAILED, PROCESSING
from chunky_redis.processing import finalize as steps
from chunky_redis.processing.completion import fail_upload, finalize, retry_failed
from chunky_redis.processing.finalize import Outcome
from chunky_redis.processing.finished_signals import PENDING, SENT
from chunky_redis.processing.tasks import finalize_upload
from chunky_redis.runtime import get_storage
from tests.test_finalize import complete, named, payload, put_chunks


@pytest.fixture
def processing(chunky, store, client, monkeypatch):
    """An upload verified and waiting for its finalization task (which does not run),
    and every later ``runtime.get_store()`` answering with the test's ``store``."""
    queued: list[str] = []
    monkeypatch.setattr("chunky_redis.processing.completion.enqueue_finalize", queued.append)
    monkeypatch.setattr(runtime, "get_store", lambda: store)
    data = payload(5000)
    upload_id = put_chunks(client, data)
    assert complete(client, upload_id, data).status_code == 200
    assert store.get(upload_id).status == PROCESSING
    return upload_id


def lose_replies(monkeypatch, store, script: str, times: int = 1) -> list[object]:
    """The next ``times`` runs of the store's ``script`` run, then their reply is lost."""
    real = getattr(store, script)
    lost: list[object] = []

    def run_then_lose(*, keys, args, client=None):
        result = real(keys=keys, args=args)
        if len(lost) < times:
            lost.append(result)
            raise redis.ConnectionError("Timeout reading from socket (the test lost the reply)")
        return result

    monkeypatch.setattr(store, script, run_then_lose)
    return lost


def sent(signal_log) -> dict[str, list[str]]:
    return {
        name: [s["upload_id"] for s in named(signal_log, name)]
        for name in ("upload_completed", "chunky_upload_complete", "upload_failed")
    }


def test_the_retry_of_the_winning_task_sends_the_signals_once(
    store, processing, signal_log, monkeypatch
):
    upload_id = processing
    lost = lose_replies(monkeypatch, store, "_transition")
    with pytest.raises(StoreUnavailable):
        finalize(upload_id, run_id="task-1")
    assert lost == [b"ok"]  # the status moved...
    upload = store.get(upload_id)
    assert (upload.status, upload.signal_run, upload.signal_state) == (COMPLETE, "task-1", PENDING)
    assert sent(signal_log)["upload_completed"] == []  # ...and its winner never heard
    assert finalize(upload_id, run_id="task-2").status == "skipped"  # another task: not its own
    assert sent(signal_log)["upload_completed"] == []
    assert finalize(upload_id, run_id="task-1").status == COMPLETE  # the retry sends them
    assert finalize(upload_id, run_id="task-1").status == "skipped"  # once
    assert finalize(upload_id, run_id="task-2").status == "skipped"
    assert sent(signal_log) == {
        "upload_completed": [upload_id],
        "chunky_upload_complete": [upload_id],
        "upload_failed": [],
    }
    upload = store.get(upload_id)
    assert upload.signal_state == SENT
    (signal,) = named(signal_log, "upload_completed")
    assert signal["final_name"] == upload.final_name != ""
    assert (signal["filename"], signal["size"]) == ("report.bin", 5000)
    (old,) = named(signal_log, "chunky_upload_complete")
    assert int(old["completed_on"].timestamp() * 1000) == upload.completed
    assert store.due_processing(store.now() + 1) == []  # and it left the sweeper's to-do list


def test_a_lost_reply_of_a_failure_is_signalled_once(store, processing, signal_log, monkeypatch):
    upload_id = processing
    get_storage().delete(upload_id)  # the bytes are gone: the upload fails
    lose_replies(monkeypatch, store, "_transition")
    with pytest.raises(StoreUnavailable):
        finalize(upload_id, run_id="task-1")
    assert store.get(upload_id).status == FAILED
    assert store.failed_ids() == []  # the failed index was not written either...
    assert finalize(upload_id, run_id="task-2").status == "skipped"
    outcome = finalize(upload_id, run_id="task-1")
    assert (outcome.status, outcome.reason) == (FAILED, store.get(upload_id).reason)
    assert finalize(upload_id, run_id="task-1").status == "skipped"
    assert named(signal_log, "upload_failed") == [
        {"upload_id": upload_id, "reason": store.get(upload_id).reason}
    ]
    assert sent(signal_log)["upload_completed"] == []
    assert store.failed_ids() == [upload_id]  # ...until the retry: chunky_retry finds it


def test_the_task_giving_up_still_sends_what_its_run_owes(
    store, processing, signal_log, monkeypatch
):
    """Redis came back only after the last retry: the give-up path finds the upload
    complete by its own run, and sends the signals instead of failing it."""
    lose_replies(monkeypatch, store, "_transition")
    with pytest.raises(StoreUnavailable):
        finalize(processing, run_id="task-1")
    assert fail_upload(processing, "gave up", run_id="task-2").status == "skipped"
    assert fail_upload(processing, "gave up", run_id="task-1").status == COMPLETE
    assert fail_upload(processing, "gave up", run_id="task-1").status == "skipped"
    assert sent(signal_log)["upload_completed"] == [processing]
    assert sent(signal_log)["upload_failed"] == []
    assert store.get(processing).status == COMPLETE


def test_the_eager_task_retries_with_the_same_run(store, processing, signal_log, monkeypatch):
    lose_replies(monkeypatch, store, "_transition")
    assert finalize_upload.apply(args=[processing]).get() == COMPLETE
    assert sent(signal_log)["upload_completed"] == [processing]
    assert finalize_upload.apply(args=[processing]).get() == "skipped"  # another task
    assert sent(signal_log)["upload_completed"] == [processing]


def test_a_lost_reply_of_the_record_that_they_were_sent_sends_nothing_again(
    store, processing, signal_log, monkeypatch
):
    """The signals went out; the reply to 'sent' is lost: the task must not fail (a
    retry would send them again), and the record says 'sent' all the same."""
    lost = lose_replies(monkeypatch, store, "_signals_sent")
    assert finalize(processing, run_id="task-1").status == COMPLETE
    assert lost == [b"ok"]
    assert finalize(processing, run_id="task-1").status == "skipped"
    assert sent(signal_log)["upload_completed"] == [processing]
    assert store.get(processing).signal_state == SENT


def test_a_transition_run_twice_by_the_same_task_sends_once(
    store, processing, signal_log, monkeypatch
):
    """A client that retries a command whose reply it lost runs the script again: the
    second run answers 'complete'. The task that made it so still sends the signals."""
    real = store._transition

    def twice(*, keys, args, client=None):
        real(keys=keys, args=args)
        return real(keys=keys, args=args)

    monkeypatch.setattr(store, "_transition", twice)
    assert finalize(processing, run_id="task-1").status == COMPLETE
    assert sent(signal_log)["upload_completed"] == [processing]
    assert store.get(processing).signal_state == SENT


def test_a_retried_failed_upload_signals_its_completion_once(
    store, processing, signal_log, monkeypatch
):
    """chunky_retry: failed -> processing under a new task, whose run owes the completion."""
    upload_id = processing
    real_verify = steps._verify
    monkeypatch.setattr(steps, "_verify", lambda upload, chunks: "broken disk")
    assert finalize(upload_id, run_id="task-1").status == FAILED
    monkeypatch.setattr(steps, "_verify", real_verify)
    queued: list[str] = []
    monkeypatch.setattr("chunky_redis.processing.completion.enqueue_finalize", queued.append)
    assert retry_failed(upload_id) == "queued"
    lose_replies(monkeypatch, store, "_transition")
    with pytest.raises(StoreUnavailable):
        finalize(upload_id, run_id="task-2")
    assert finalize(upload_id, run_id="task-1").status == "skipped"  # the failing run: not now
    assert finalize(upload_id, run_id="task-2").status == COMPLETE
    assert sent(signal_log) == {
        "upload_completed": [upload_id],
        "chunky_upload_complete": [upload_id],
        "upload_failed": [upload_id],
    }


def test_nothing_is_recorded_for_an_upload_whose_record_is_gone(store, processing):
    upload_id = processing
    assert finalize(upload_id, run_id="task-1").status == COMPLETE
    assert store.signals_sent(upload_id, COMPLETE, "task-2") == "other"
    assert store.signals_sent(upload_id, FAILED, "task-1") == "other"
    assert store.signals_sent(upload_id, COMPLETE, "task-1") == "ok"
    store.redis.delete(store.record_key(upload_id))
    assert store.signals_sent(upload_id, COMPLETE, "task-1") == "missing"
    assert not store.redis.exists(store.record_key(upload_id))  # nothing came back to life


def wipe(store, upload_id: str) -> None:
    """Every key of the upload, and its index entries, gone (a flush, an eviction)."""
    keys = list(store.redis.scan_iter(match=f"{store.prefix}:{{{upload_id}}}:*"))
    if keys:
        store.redis.delete(*keys)
    store.index_status(upload_id, COMPLETE)  # out of the processing and failed indexes
    store.forget_expiry(upload_id)


def assert_gone(store, client, upload_id: str, signal_log) -> None:
    assert store.get(upload_id) is None
    assert list(store.redis.scan_iter(match=f"{store.prefix}:{{{upload_id}}}:*")) == []
    reply = client.get(f"/upload/{upload_id}/")
    assert reply.status_code == 404, reply.content
    assert sent(signal_log) == {
        "upload_completed": [],
        "chunky_upload_complete": [],
        "upload_failed": [],
    }


def test_replays_after_the_keys_were_wiped_mid_upload_resurrect_nothing(
    chunky, store, client, signal_log, monkeypatch
):
    monkeypatch.setattr(runtime, "get_store", lambda: store)
    data = payload(3 * 1024)
    headers = {"Content-Range": f"bytes 0-1023/{len(data)}"}
    first = client.put(
        "/upload/?filename=a.bin", data=data[:1024],
        content_type="application/octet-stream", headers=headers,
    )  # fmt: skip
    assert first.status_code == 200, first.content
    upload_id = first.json()["upload_id"]
    wipe(store, upload_id)
    for start in (0, 1024, 2048):  # the first chunk again, then the rest
        part = data[start : start + 1024]
        headers = {"Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}"}
        reply = client.put(
            f"/upload/{upload_id}/", data=part,
            content_type="application/octet-stream", headers=headers,
        )  # fmt: skip
        assert reply.status_code == 404, reply.content
    assert complete(client, upload_id, data).status_code == 404
    assert finalize(upload_id, run_id="task-1").status == "skipped"
    assert fail_upload(upload_id, "gave up", run_id="task-1").status == "skipped"
    assert_gone(store, client, upload_id, signal_log)


def test_replays_after_the_keys_were_wiped_mid_completion_resurrect_nothing(
    store, processing, client, signal_log, monkeypatch
):
    """The status change ran and its reply was lost; then the keys went. The retry of
    the finishing task, a replayed completion, a duplicate task: all find nothing."""
    upload_id = processing
    lose_replies(monkeypatch, store, "_transition")
    with pytest.raises(StoreUnavailable):
        finalize(upload_id, run_id="task-1")
    assert store.get(upload_id).signal_state == PENDING
    wipe(store, upload_id)
    assert complete(client, upload_id, payload(5000)).status_code == 404
    assert finalize(upload_id, run_id="task-1").status == "skipped"
    assert finalize(upload_id, run_id="task-2").status == "skipped"
    assert fail_upload(upload_id, "gave up", run_id="task-1").status == "skipped"
    assert finalize_upload.apply(args=[upload_id]).get() == "skipped"
    assert retry_failed(upload_id) == "missing"
    assert_gone(store, client, upload_id, signal_log)


def test_keys_wiped_while_the_retry_waits_for_the_lease_resurrect_nothing(
    store, processing, client, signal_log, monkeypatch
):
    """The retry read the record (complete, signals owed to it), then the keys went
    before it took the lease: it reads again under the lease and sends nothing."""
    upload_id = processing
    lose_replies(monkeypatch, store, "_transition")
    with pytest.raises(StoreUnavailable):
        finalize(upload_id, run_id="task-1")
    real_take = store.take_lease

    def wipe_then_take(*args, **kwargs):
        wipe(store, upload_id)
        return real_take(*args, **kwargs)

    monkeypatch.setattr(store, "take_lease", wipe_then_take)
    assert finalize(upload_id, run_id="task-1") == Outcome("skipped", "missing")
    assert_gone(store, client, upload_id, signal_log)


def test_calls_without_a_run_id_are_runs_of_their_own(store, processing, signal_log, monkeypatch):
    """A direct call (no Celery task) is one run: another direct call is not its retry."""
    lose_replies(monkeypatch, store, "_transition")
    with pytest.raises(StoreUnavailable):
        finalize(processing)
    assert finalize(processing).status == "skipped"
    assert sent(signal_log)["upload_completed"] == []


def test_steps_without_a_run_id_are_runs_of_their_own(store, processing, signal_log, monkeypatch):
    stale = store.get(processing)
    lose_replies(monkeypatch, store, "_transition")
    with pytest.raises(StoreUnavailable):
        steps._finalize_under_lease(stale, store, get_storage())
    assert steps._finalize_under_lease(stale, store, get_storage()).status == "skipped"
    assert sent(signal_log)["upload_completed"] == []


def test_a_failed_verification_says_why_and_who(store, processing, signal_log):
    store.redis.hset(store.record_key(processing), "checksum", "0" * 32)  # not the bytes' md5
    outcome = finalize(processing, run_id="task-1")
    assert outcome.status == FAILED and outcome.reason.startswith("The md5 of the received bytes")
    failed = store.get(processing)
    assert (failed.reason, failed.signal_run, failed.signal_state) == (
        outcome.reason,
        "task-1",
        SENT,
    )
    assert named(signal_log, "upload_failed") == [
        {"upload_id": processing, "reason": outcome.reason}
    ]
