"""A sorted set of upload ids split over a fixed number of keys. No Django here.

One sorted set is one key, and on Redis Cluster one key lives on one shard: an
index that every upload writes to would make that shard hot. Split over BUCKETS
keys without hash tags, the buckets hash to different slots and spread over the
shards; a reader asks all of them in one pipeline (one round trip per shard).
"""

from __future__ import annotations

import zlib
from typing import Any

# Fixed, not a setting: changing it would strand the entries of the old buckets.
BUCKETS = 16


class ShardedIndex:
    """Upload ids scored by a time in ms; an id's bucket is crc32(id) % BUCKETS."""

    def __init__(self, redis: Any, name: str):
        self.redis = redis
        self.name = name

    def key_for(self, member: str) -> str:
        return self._key(zlib.crc32(member.encode()) % BUCKETS)

    @property
    def keys(self) -> list[str]:
        return [self._key(bucket) for bucket in range(BUCKETS)]

    def _key(self, bucket: int) -> str:
        return f"{self.name}:{bucket:x}"

    def add(self, member: str, score: int, client: Any = None) -> None:
        """``client``: a pipeline to queue the command in instead of running it."""
        (client or self.redis).zadd(self.key_for(member), {member: score})

    def remove(self, member: str, client: Any = None) -> None:
        (client or self.redis).zrem(self.key_for(member), member)

    def score(self, member: str) -> float | None:
        score: float | None = self.redis.zscore(self.key_for(member), member)
        return score

    def up_to(self, score: int, limit: int) -> list[str]:
        """The ``limit`` members with the lowest scores, all at most ``score``, lowest first."""
        pipe = self.redis.pipeline(transaction=False)
        for key in self.keys:
            pipe.zrangebyscore(key, "-inf", score, start=0, num=limit, withscores=True)
        found = sorted((s, m) for bucket in pipe.execute() for m, s in bucket)
        return [m.decode() for _, m in found[:limit]]

    def count_from(self, score: int) -> int:
        """How many members score ``score`` or more, over every bucket in one pipeline."""
        pipe = self.redis.pipeline(transaction=False)
        for key in self.keys:
            pipe.zcount(key, score, "+inf")
        return sum(pipe.execute())

    def size(self) -> int:
        pipe = self.redis.pipeline(transaction=False)
        for key in self.keys:
            pipe.zcard(key)
        return sum(pipe.execute())
