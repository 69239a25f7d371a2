"""What a process learns of Redis's clock (chunky_redis/core/redis_clock.py), reply by reply:
only quick replies teach the offset, and a lesson says whether the old estimate was off."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import fakeredis
import pytest

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


# -- the lock request's deadline, on Redis's clock (UploadStore.acquire) ---------------------


def skewed_store(skews: list[float], budget_ms: int | None = 1000) -> UploadStore:
    """A store whose host clock is off Redis's by ``skews[0]`` seconds, then ``skews[1]``...
    (one per reading; the last one stays)."""

    def clock() -> float:
        skew = skews.pop(0) if len(skews) > 1 else skews[0]
        return time.time() + skew

    return UploadStore(
        # (no socket timeout either: it would bound the budget)
        fakeredis.FakeRedis(socket_timeout=None if budget_ms is None else 5),
        prefix=f"clock-{uuid.uuid4().hex[:12]}",
        lock_request_timeout_ms=budget_ms,
        clock=clock,
    )


def new_upload(store: UploadStore) -> str:
    upload_id = uuid.uuid4().hex
    store.create(Upload(upload_id=upload_id, size=10, expires=store.now() + 600_000))
    return upload_id


@pytest.mark.parametrize("skew_s", [-60, 60])
def test_a_host_whose_clock_is_off_takes_the_lock_and_learns_the_offset(skew_s):
    """Behind Redis's clock, the first request looks late: its reply teaches the offset
    and the request is sent again, once. Ahead, the lock is taken at once."""
    store = skewed_store([skew_s])
    upload_id = new_upload(store)
    code, upload = store.acquire(upload_id, "", "a")
    assert (code, upload.upload_id) == ("ok", upload_id)  # type: ignore[union-attr]
    assert store.acquire(upload_id, "", "b")[0] == "locked"  # "a" holds the lock
    store.release(upload_id, "a")
    assert abs(redis_clock.offset(store.redis) + skew_s * 1000) < 1000
    assert store.acquire(upload_id, "", "b")[0] == "ok"  # the learned offset is right
    assert store.acquire(upload_id, "", "c")[0] == "locked"


def test_a_lock_request_that_reached_redis_after_its_deadline_is_late():
    """Sent 5 s before Redis saw it (a stall), with a deadline 1 s after it was sent:
    refused as late, and a slow round trip teaches nothing, so it is not sent again."""
    store = skewed_store([0.0])
    upload_id = new_upload(store)
    assert store.acquire(upload_id, "", "a")[0] == "ok"  # learns the offset: 0
    store.release(upload_id, "a")
    store.clock = skewed_store([-5.0, 0.0]).clock  # the next request reads its clock 5 s early
    assert store.acquire(upload_id, "", "b") == ("late", None)
    assert store.acquire(upload_id, "", "b")[0] == "ok"  # no lock was taken for the late one


def test_without_a_request_budget_no_lock_request_is_late():
    store = skewed_store([-60.0], budget_ms=None)
    assert store.lock_request_timeout_ms is None
    upload_id = new_upload(store)
    assert store.acquire(upload_id, "", "a")[0] == "ok"


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


# -- which pool stands for a client, and how long a lock request may take ------------------


class NodesManager:
    connection_kwargs = {"socket_timeout": 2}


class ClusterClient:
    """Like a cluster client: a nodes manager holds the connection options, no pool."""

    def __init__(self, nodes_manager: NodesManager) -> None:
        self.nodes_manager = nodes_manager


def test_a_cluster_client_learns_its_offset_on_its_nodes_manager():
    nodes_manager = NodesManager()
    cluster: Any = ClusterClient(nodes_manager)
    assert learn(cluster, 0, 0, 7000) is True
    assert offset(cluster) == 7000
    assert offset(ClusterClient(nodes_manager)) == 7000  # type: ignore[arg-type]  # same cluster
    assert offset(ClusterClient(NodesManager())) == 0  # type: ignore[arg-type]
    assert redis_clock.lock_budget(cluster, 5000) == 2000  # its connection options count


def test_a_lock_request_s_budget_is_never_longer_than_the_socket_timeout():
    assert redis_clock.lock_budget(fakeredis.FakeRedis(socket_timeout=2), 5000) == 2000
    assert redis_clock.lock_budget(fakeredis.FakeRedis(socket_timeout=2), 1500) == 1500
    assert redis_clock.lock_budget(fakeredis.FakeRedis(socket_timeout=2.5), None) == 2500
    assert redis_clock.lock_budget(fakeredis.FakeRedis(socket_timeout=None), 5000) == 5000
    assert redis_clock.lock_budget(fakeredis.FakeRedis(socket_timeout=None), None) is None


def test_a_client_without_a_pool_has_the_configured_lock_budget():
    assert redis_clock.lock_budget(object(), 5000) == 5000  # type: ignore[arg-type]
    assert redis_clock.lock_budget(object(), None) is None  # type: ignore[arg-type]


def test_a_store_s_lock_request_budget_is_bounded_by_its_client_s_socket_timeout():
    store = UploadStore(fakeredis.FakeRedis(socket_timeout=2), lock_request_timeout_ms=5000)
    assert store.lock_request_timeout_ms == 2000
