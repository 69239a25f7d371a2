"""What a process learns of Redis's clock (chunky_redis/core/redis_clock.py), reply by reply:
only quick replies teach the offset, and a lesson says whether the old estimate was off."""

from __future__ import annotations

import fakeredis

from chunky_redis.core import redis_clock
from chunky_redis.core.redis_clock import SAMPLE_MAX_RTT_MS, learn, offset


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
