"""Per-owner quotas: how many uploads, and how many bytes, one owner may have in flight. No Django here.

An upload is in flight from its first chunk until its completion is accepted (or it
expires). Each owner has an index of its uploads in flight, three keys that share
the hash tag ``{owner:<owner>}``:

- ``...:inflight``, a sorted set of upload ids scored by each upload's expiry (ms);
- ``...:sizes``, a hash of their declared sizes;
- ``...:bytes``, the sum of those sizes.

The index is in its owner's slot, not in the upload's, so on Redis Cluster it is
updated by commands separate from the upload's record, and may miss an update
(a process killed between the two). It heals itself: an entry is dropped once
its score, the upload's expiry, has passed; and before a refusal, entries whose
upload has already left ``uploading`` are dropped. The keys expire with their
last entry.

Anonymous users all share the owner "": for them a quota is one pool shared by
every anonymous client (a cap on anonymous uploads site-wide, not per client).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from redis.typing import EncodableT

from . import errors as exc
from .records import wrap_errors as _wrap_errors
from .redis_clients import AnyRedis
from .store import UPLOADING, now_ms


@dataclass(frozen=True)
class Quota:
    """Limits for one owner; None is no limit."""

    max_uploads: int | None = None  # uploads in flight
    max_bytes: int | None = None  # the sum of their declared sizes

    @property
    def unlimited(self) -> bool:
        return self.max_uploads is None and self.max_bytes is None


# Sizes are written as the strings they came as (INCRBY/DECRBY): Lua numbers are doubles,
# and Redis may format a large one in exponent notation. They are only compared as numbers.
_DROP_STALE = """
local function drop(id)
  local size = redis.call('HGET', KEYS[2], id)
  if size then
    redis.call('HDEL', KEYS[2], id)
    redis.call('DECRBY', KEYS[3], size)
  end
  redis.call('ZREM', KEYS[1], id)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)) do
  drop(id)
end
"""

_EXPIRE_WITH_LAST = """
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
else
  for i = 1, 3 do redis.call('PEXPIREAT', KEYS[i], last[2]) end
end
"""

# ARGV: now, upload id, size, expires, max uploads ('' = none), max bytes ('' = none).
# Admitting an upload again updates its size (known only once a multipart body is read).
ADMIT = (
    _DROP_STALE
    + """
local previous = redis.call('HGET', KEYS[2], ARGV[2])
local count = redis.call('ZCARD', KEYS[1])
if not previous then count = count + 1 end
if ARGV[5] ~= '' and count > tonumber(ARGV[5]) then return {'uploads', count - 1} end
local others = tonumber(redis.call('GET', KEYS[3]) or '0') - tonumber(previous or '0')
if ARGV[6] ~= '' and others + tonumber(ARGV[3]) > tonumber(ARGV[6]) then
  return {'bytes', others}
end
if previous then redis.call('DECRBY', KEYS[3], previous) end
redis.call('INCRBY', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[2])
"""
    + _EXPIRE_WITH_LAST
    + "return {'ok'}\n"
)

# ARGV: now, upload id.
RELEASE = (
    _DROP_STALE
    + """
drop(ARGV[2])
"""
    + _EXPIRE_WITH_LAST
    + "return 1\n"
)

# ARGV: now, upload id, new expiry. Only an upload that is tracked (sliding expiration).
TOUCH = (
    _DROP_STALE
    + """
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2]) end
"""
    + _EXPIRE_WITH_LAST
    + "return 1\n"
)


class QuotaTracker:
    """The per-owner index of uploads in flight, and the checks against a Quota."""

    def __init__(
        self,
        redis: AnyRedis,
        *,
        prefix: str = "chunky",
        clock: Callable[[], float] = time.time,
    ):
        self.redis = redis
        self.prefix = prefix
        self.clock = clock
        self._admit = redis.register_script(ADMIT)
        self._release = redis.register_script(RELEASE)
        self._touch = redis.register_script(TOUCH)

    def keys(self, owner: str) -> list[str]:
        base = f"{self.prefix}:{{owner:{owner}}}"
        return [f"{base}:inflight", f"{base}:sizes", f"{base}:bytes"]

    def admit(
        self,
        owner: str,
        upload_id: str,
        *,
        size: int,
        expires: int,
        quota: Quota,
        statuses: Callable[[list[str]], dict[str, str | None]],
    ) -> None:
        """Count the upload in its owner's index, or raise TooManyUploads / QuotaExceeded.

        ``statuses`` reads the records of uploads (the store's): before refusing,
        entries whose upload is no longer uploading are dropped, and the check runs again.
        """
        for attempt in (1, 2):
            answer = self._run_admit(owner, upload_id, size, expires, quota)
            if answer[0] == b"ok":
                return
            if attempt == 1 and self._drop_finished(owner, upload_id, statuses):
                continue
            if answer[0] == b"uploads":
                raise exc.TooManyUploads(
                    f"You have {answer[1]} uploads in progress, the most allowed; complete one "
                    "or wait for one to expire.",
                    in_flight=int(answer[1]),
                    limit=quota.max_uploads,
                )
            raise exc.QuotaExceeded(
                f"Your uploads in progress hold {answer[1]} bytes; {size} more would pass "
                f"the limit of {quota.max_bytes}.",
                bytes_in_flight=int(answer[1]),
                limit=quota.max_bytes,
            )

    def _run_admit(
        self, owner: str, upload_id: str, size: int, expires: int, quota: Quota
    ) -> list[Any]:
        args: list[EncodableT] = [
            now_ms(self.clock),
            upload_id,
            size,
            expires,
            "" if quota.max_uploads is None else quota.max_uploads,
            "" if quota.max_bytes is None else quota.max_bytes,
        ]
        with _wrap_errors():
            answer: list[Any] = self._admit(keys=self.keys(owner), args=args)
            return answer

    def _drop_finished(
        self,
        owner: str,
        upload_id: str,
        statuses: Callable[[list[str]], dict[str, str | None]],
    ) -> bool:
        """Drop entries whose upload left ``uploading`` (a release that was missed)."""
        with _wrap_errors():
            # Members only, as bytes: the clients leave decode_responses off.
            members = cast("list[bytes]", self.redis.zrange(self.keys(owner)[0], 0, -1))
            ids = [i.decode() for i in members]
        # No record yet is a first chunk still arriving: it stays until its expiry.
        finished = [i for i, status in statuses(ids).items() if status not in (None, UPLOADING)]
        for finished_id in finished:
            self.release(owner, finished_id)
        return bool(finished)

    def release(self, owner: str, upload_id: str) -> None:
        with _wrap_errors():
            self._release(keys=self.keys(owner), args=[now_ms(self.clock), upload_id])

    def touch(self, owner: str, upload_id: str, expires: int) -> None:
        """Move a tracked upload's expiry (sliding expiration)."""
        with _wrap_errors():
            self._touch(keys=self.keys(owner), args=[now_ms(self.clock), upload_id, expires])

    def in_flight(self, owner: str) -> dict[str, int]:
        """upload id -> declared size, of the owner's uploads in flight."""
        with _wrap_errors():
            raw = cast("dict[bytes, bytes]", self.redis.hgetall(self.keys(owner)[1]))
        return {k.decode(): int(v) for k, v in raw.items()}
