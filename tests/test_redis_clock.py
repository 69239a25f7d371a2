"""What a process learns of Redis's clock (chunky_redis/core/redis_clock.py), reply by reply:
only quick replies teach the offset, and a lesson says whether the old estimate was off."""

from __future__ import annotations

import itertools
import time
import uuid

import fakeredis

from chunky_redis.core import redis_clock
from chunky_redis.core.redis_clock import SAMPLE_MAX_RTT_MS, learn, offset
from chunky_redis.core.store import Upload, UploadStore


def test_the_offset_is_zero_until_a_reply_teaches_it():
    redis = fakeredis.FakeRedis()
    assert offset(redis) == 0
    assert offset(object()) == 0  # type: ignore[arg-type]  # no connection pool: nothing known


def test_a_quick_reply_teaches_redis_s_clock_minus_ours_at_its_midpoint():
    redis = fakeredis.FakeRedis()
    # sent at 1000, answered at 1011 (the midpoint rounds down to 1005), stamped 6005
    assert learn(redis, 1000, 1011, 6005) is True  # 0 was off by far more than a reply's error
    assert offset(redis) == 5000
    assert isinstance(offset(redis), int)
    # a later sample that agrees within a quick reply's error: the estimate was right
    assert learn(redis, 2000, 2010, 7005 + SAMPLE_MAX_RTT_MS) is False
    assert offset(redis) == 5000 + SAMPLE_MAX_RTT_MS
    # exactly one error away is still right; one more is off
    assert learn(redis, 3000, 3000, 3000 + 5000) is False
    assert learn(redis, 4000, 4000, 4000 + 5000 + SAMPLE_MAX_RTT_MS + 1) is True


def test_a_first_lesson_a_little_past_the_error_is_off():
    redis = fakeredis.FakeRedis()
    assert learn(redis, 0, 0, SAMPLE_MAX_RTT_MS + 1) is True
    assert offset(redis) == SAMPLE_MAX_RTT_MS + 1


def test_a_slow_reply_teaches_nothing():
    redis = fakeredis.FakeRedis()
    assert learn(redis, 1000, 1000 + SAMPLE_MAX_RTT_MS + 1, 90_000) is False
    assert offset(redis) == 0
    assert learn(redis, 1000, 1000 + SAMPLE_MAX_RTT_MS, 90_000) is True  # just quick enough
    assert offset(redis) == 90_000 - (1000 + SAMPLE_MAX_RTT_MS // 2)


def test_a_client_without_a_pool_learns_nothing():
    assert learn(object(), 1000, 1001, 9000) is False  # type: ignore[arg-type]
    assert redis_clock.offset(object()) == 0  # type: ignore[arg-type]


def test_each_connection_pool_has_its_own_offset():
    one, other = fakeredis.FakeRedis(), fakeredis.FakeRedis()
    learn(one, 0, 0, 7000)
    assert (offset(one), offset(other)) == (7000, 0)


# -- what the store does with it: a lock request's deadline, on Redis's clock ---------------


def clock_store(
    skew_s: float, *, step_s: float = 0.0, budget_ms: int | None = 1000
) -> tuple[UploadStore, Upload]:
    """A store on a fresh fakeredis whose clock is ``skew_s`` off Redis's (negative: behind)
    and moves ``step_s`` more at each reading (more than a quick reply: nothing is learned),
    with one upload of its owner "7"."""
    readings = itertools.count()
    store = UploadStore(
        fakeredis.FakeRedis(socket_timeout=None),  # the budget is budget_ms alone
        lock_request_timeout_ms=budget_ms,
        clock=lambda: time.time() + skew_s + step_s * next(readings),
    )
    now = store.now()
    upload = Upload(
        upload_id=uuid.uuid4().hex, owner="7", size=10, created=now, expires=now + 3_600_000
    )
    store.create(upload)
    return store, upload


def test_a_store_behind_redis_s_clock_takes_the_lock_on_its_second_ask():
    store, upload = clock_store(-60)
    code, got = store.acquire(upload.upload_id, "7", "mine")
    # the first ask arrived past its deadline on Redis's clock; its reply taught the
    # offset, and the second ask, with it, took the lock for the caller's token
    assert code == "ok" and got is not None and got.upload_id == upload.upload_id
    assert abs(offset(store.redis) - 60_000) < 1000
    assert store.redis.get(store.lock_key(upload.upload_id)) == b"mine"
    assert store.acquire(upload.upload_id, "7", "other")[0] == "locked"


def test_a_store_ahead_of_redis_s_clock_asks_once():
    store, upload = clock_store(+60)
    # its deadline was late enough: taken at once (the lesson that the clock was off
    # calls for no second ask, which would find the lock taken)
    assert store.acquire(upload.upload_id, "7", "mine")[0] == "ok"
    assert abs(offset(store.redis) + 60_000) < 1000
    assert store.redis.get(store.lock_key(upload.upload_id)) == b"mine"


def test_a_lock_request_that_reaches_redis_past_its_deadline_takes_no_lock():
    # a minute behind, and every reply too slow to teach the offset: always late
    store, upload = clock_store(-60, step_s=0.2)
    assert store.acquire(upload.upload_id, "7", "mine") == ("late", None)
    assert store.redis.get(store.lock_key(upload.upload_id)) is None
    assert offset(store.redis) == 0
    # a read takes no lock and has no deadline
    code, got = store.acquire(upload.upload_id, "7", "", lock=False)
    assert code == "ok" and got is not None


def test_without_a_lock_request_budget_a_lock_request_is_never_late():
    store, upload = clock_store(-60, step_s=0.2, budget_ms=None)
    assert store.lock_request_timeout_ms is None
    assert store.acquire(upload.upload_id, "7", "mine")[0] == "ok"
    assert store.redis.get(store.lock_key(upload.upload_id)) == b"mine"
