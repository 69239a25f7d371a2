"""The upload session store: one Redis hash per upload, plus a lock key.

No Django here. Every multi-key script touches only the keys of one upload,
which share the hash tag ``{<upload_id>}``, so the scripts run on Redis
Cluster too. The sorted set of expiries (for the sweeper) lives in its own
slot and is written with separate commands.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib

from . import lua
from .exceptions import StoreUnavailable

UPLOADING = "uploading"
PROCESSING = "processing"
COMPLETE = "complete"
FAILED = "failed"
EXPIRED = "expired"


@dataclass
class Upload:
    upload_id: str
    owner: str = ""
    filename: str = ""
    size: int = 0
    offset: int = 0
    status: str = UPLOADING
    created: int = 0  # ms since the epoch
    expires: int = 0  # ms since the epoch
    algorithm: str = "md5"
    hash_state: bytes = b""
    checksum: str = ""  # the digest the client gave at completion
    reason: str = ""
    final_name: str = ""
    final_url: str = ""
    completed: int = 0
    queued: int = 0  # ms since the epoch: when post-processing was last queued
    extra: dict[str, Any] = field(default_factory=dict)

    _INT_FIELDS = ("size", "offset", "created", "expires", "completed", "queued")

    @classmethod
    def from_redis(cls, upload_id: str, raw: dict[bytes, bytes] | list[bytes]) -> Upload:
        if isinstance(raw, list):
            raw = dict(zip(raw[::2], raw[1::2], strict=True))
        values: dict[str, Any] = {}
        for key, value in raw.items():
            name = key.decode()
            if name == "hash_state":
                values[name] = value
            elif name in cls._INT_FIELDS:
                values[name] = int(value or 0)
            elif name == "extra":
                values[name] = json.loads(value) if value else {}
            elif name in cls.__dataclass_fields__:
                values[name] = value.decode()
        return cls(upload_id=upload_id, **values)

    def to_redis(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "upload_id":
                continue
            value = getattr(self, name)
            out[name] = json.dumps(value) if name == "extra" else value
        return out

    def is_expired(self, now_ms: int) -> bool:
        return self.status == EXPIRED or (self.status == UPLOADING and self.expires <= now_ms)


@contextmanager
def _wrap_errors() -> Iterator[None]:
    try:
        yield
    except (redis_lib.ConnectionError, redis_lib.TimeoutError) as e:
        raise StoreUnavailable(f"Redis is unavailable: {e}") from e
    except redis_lib.ResponseError as e:
        raise StoreUnavailable(f"Redis refused a command: {e}") from e


def now_ms(clock: Callable[[], float] = time.time) -> int:
    return int(clock() * 1000)


# Replies slower than this teach nothing about the offset between clocks.
_CLOCK_SAMPLE_MAX_RTT_MS = 100
# Per connection pool (one per Redis server and process): Redis's clock minus ours, in ms.
_clock_offsets: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


class UploadStore:
    """Reads and changes upload records. All times are milliseconds since the epoch."""

    def __init__(
        self,
        redis: redis_lib.Redis,
        *,
        prefix: str = "chunky",
        lock_timeout_ms: int = 30_000,
        expired_retention_ms: int = 86_400_000,
        completed_retention_ms: int = 7 * 86_400_000,
        lock_request_timeout_ms: int | None = 5_000,
        clock: Callable[[], float] = time.time,
    ):
        self.redis = redis
        self.prefix = prefix
        self.lock_timeout_ms = lock_timeout_ms
        self.expired_retention_ms = expired_retention_ms
        self.completed_retention_ms = completed_retention_ms
        self.lock_request_timeout_ms = _lock_budget(redis, lock_request_timeout_ms)
        self.clock = clock
        self._acquire = redis.register_script(lua.ACQUIRE)
        self._commit = redis.register_script(lua.COMMIT)
        self._mark_processing = redis.register_script(lua.MARK_PROCESSING)
        self._create = redis.register_script(lua.CREATE)
        self._release = redis.register_script(lua.RELEASE)
        self._extend = redis.register_script(lua.EXTEND)
        self._transition = redis.register_script(lua.TRANSITION)
        self._mark_expired = redis.register_script(lua.MARK_EXPIRED)
        self._presence = redis.register_script(lua.PRESENCE)
        self._requeue = redis.register_script(lua.REQUEUE)

    # -- keys ----------------------------------------------------------------
    def record_key(self, upload_id: str) -> str:
        return f"{self.prefix}:{{{upload_id}}}:upload"

    def lock_key(self, upload_id: str) -> str:
        return f"{self.prefix}:{{{upload_id}}}:lock"

    def lease_key(self, upload_id: str) -> str:
        return f"{self.prefix}:{{{upload_id}}}:finalize"

    @property
    def expiries_key(self) -> str:
        return f"{self.prefix}:expiries"

    @property
    def processing_key(self) -> str:
        """Uploads handed to post-processing, scored by when (ms): the sweeper's to-do list."""
        return f"{self.prefix}:processing"

    @property
    def failed_key(self) -> str:
        """Failed uploads, scored by when they failed (ms): what ``chunky_retry --all-failed`` retries."""
        return f"{self.prefix}:failed"

    def now(self) -> int:
        return now_ms(self.clock)

    # -- reads ---------------------------------------------------------------
    def get(self, upload_id: str) -> Upload | None:
        with _wrap_errors():
            raw = self.redis.hgetall(self.record_key(upload_id))
        return Upload.from_redis(upload_id, raw) if raw else None

    def acquire(
        self, upload_id: str, owner: str, token: str, lock: bool = True
    ) -> tuple[str, Upload | None]:
        """Check owner and expiry and take the lock, in one round trip.

        Returns ("ok", upload) or (reason, None) with reason one of
        "missing" (or not the owner's), "expired", "locked", or "late": the
        request reached Redis after its deadline (``lock_request_timeout_ms``
        after it was sent, on Redis's clock), when its sender has given up, so
        it took no lock.
        """
        code, fields, clock_was_off = self._acquire_once(upload_id, owner, token, lock)
        if code == "late" and clock_was_off:
            # Refused although the reply came back at once: our clock was behind
            # Redis's. The reply taught us the offset; ask once more with it.
            code, fields, _ = self._acquire_once(upload_id, owner, token, lock)
        if code != "ok":
            return code, None
        return code, Upload.from_redis(upload_id, fields)

    def _acquire_once(
        self, upload_id: str, owner: str, token: str, lock: bool
    ) -> tuple[str, Any, bool]:
        keys = [self.record_key(upload_id), self.lock_key(upload_id)]
        pool = getattr(self.redis, "connection_pool", None)
        offset = _clock_offsets.get(pool, 0) if pool is not None else 0
        budget = self.lock_request_timeout_ms
        sent = self.now()
        deadline = sent + offset + budget if budget is not None and lock else ""
        args = [owner, token, self.lock_timeout_ms, sent, "1" if lock else "0", deadline]
        with _wrap_errors():
            result = self._acquire(keys=keys, args=args)
        received = self.now()
        code, redis_now = result[0].decode(), int(result[1])
        clock_was_off = False
        if pool is not None and received - sent <= _CLOCK_SAMPLE_MAX_RTT_MS:
            learned = redis_now - (sent + received) // 2
            clock_was_off = abs(learned - offset) > _CLOCK_SAMPLE_MAX_RTT_MS
            _clock_offsets[pool] = learned
        return code, (result[2] if code == "ok" else None), clock_was_off

    # -- writes --------------------------------------------------------------
    def claim_new(self, upload_id: str, token: str) -> bool:
        """Set a new upload's creation marker (its lock key): before its file is created.

        Renew it with ``extend_lock()`` while the first chunk streams; ``create()``
        with the same token turns it into the record. The sweeper leaves the file
        of an upload alone while either lives.
        """
        with _wrap_errors():
            return bool(
                self.redis.set(self.lock_key(upload_id), token, nx=True, px=self.lock_timeout_ms)
            )

    def create(self, upload: Upload, token: str = "") -> str:
        """Store a new record; its Redis TTL runs to ``expires`` plus the expired retention.

        With ``token``, only while the creation marker ``claim_new()`` set still
        holds it (the marker is removed in the same step); returns "ok" or "lost".
        """
        fields = upload.to_redis()
        flat: list[Any] = [self._record_deadline(upload), token]
        for key, value in fields.items():
            flat += [key, value]
        keys = [self.record_key(upload.upload_id), self.lock_key(upload.upload_id)]
        with _wrap_errors():
            if upload.status == PROCESSING:  # indexed first: a lost reply leaves it findable
                self.redis.zadd(self.processing_key, {upload.upload_id: upload.queued})
            result = self._create(keys=keys, args=flat).decode()
            if result == "ok" and upload.status == UPLOADING:
                self.redis.zadd(self.expiries_key, {upload.upload_id: upload.expires})
        if result == "exists":
            raise RuntimeError(f"Upload {upload.upload_id} already exists.")
        return result

    def commit(
        self, upload: Upload, token: str, *, new_offset: int, hash_state: bytes, expires: int
    ) -> str:
        """Advance offset and checksum state; returns "ok", "lost", "conflict" or "expired".

        The lock is released in the same step, whatever the answer.
        """
        keys = [self.record_key(upload.upload_id), self.lock_key(upload.upload_id)]
        deadline = expires + self.expired_retention_ms
        args = [token, upload.offset, new_offset, hash_state, expires, deadline, self.now()]
        with _wrap_errors():
            result = self._commit(keys=keys, args=args).decode()
            if result == "ok" and expires != upload.expires:
                self.redis.zadd(self.expiries_key, {upload.upload_id: expires})
        return result

    def mark_processing(self, upload: Upload, token: str, checksum: str) -> str:
        """uploading -> processing under the lock; "ok", "lost" or "conflict".

        The upload enters the processing index *before* the status moves, so
        that if the reply (or the process) is lost after the move, the sweeper
        still finds it; entries of uploads that did not move are dropped by the
        sweeper.
        """
        keys = [self.record_key(upload.upload_id), self.lock_key(upload.upload_id)]
        now = self.now()
        deadline = now + self.completed_retention_ms
        with _wrap_errors():
            self.redis.zadd(self.processing_key, {upload.upload_id: now})
            result = self._mark_processing(
                keys=keys, args=[token, checksum, deadline, now]
            ).decode()
            if result == "ok":
                self.redis.zrem(self.expiries_key, upload.upload_id)
        if result == "ok":
            upload.queued = now
        return result

    def requeue(self, upload_id: str, grace_ms: int) -> str:
        """May post-processing be queued again? "ok" (stamped as queued now) when the
        upload is processing, no worker holds its lease and it was queued more than
        ``grace_ms`` ago; otherwise "leased", "fresh", "missing" or its status."""
        keys = [self.record_key(upload_id), self.lease_key(upload_id)]
        with _wrap_errors():
            result = self._requeue(keys=keys, args=[self.now(), grace_ms]).decode()
            if result in ("ok", "leased", "fresh"):  # looked at again after another grace
                self.redis.zadd(self.processing_key, {upload_id: self.now()})
            else:  # finished, or never got to processing: nothing to watch
                self.redis.zrem(self.processing_key, upload_id)
        return result

    def due_processing(self, queued_before_ms: int, limit: int = 500) -> list[str]:
        """Ids in the processing index queued before ``queued_before_ms``, oldest first."""
        with _wrap_errors():
            ids = self.redis.zrangebyscore(
                self.processing_key, "-inf", queued_before_ms, start=0, num=limit
            )
        return [i.decode() for i in ids]

    def index_status(self, upload_id: str, status: str) -> None:
        """Keep the indexes in step with a status post-processing gave the upload:
        processing ones in the processing index, failed ones in the failed one."""
        with _wrap_errors():
            pipe = self.redis.pipeline(transaction=False)
            if status == PROCESSING:
                pipe.zadd(self.processing_key, {upload_id: self.now()})
            else:
                pipe.zrem(self.processing_key, upload_id)
            if status == FAILED:
                pipe.zadd(self.failed_key, {upload_id: self.now()})
            else:
                pipe.zrem(self.failed_key, upload_id)
            pipe.execute()

    def lease_ttl_ms(self, upload_id: str) -> int:
        """How long the finalization lease has left (0 when nobody holds it)."""
        with _wrap_errors():
            return max(0, int(self.redis.pttl(self.lease_key(upload_id))))

    def failed_ids(self) -> list[str]:
        """Failed uploads whose record may still exist (the sweeper prunes the rest)."""
        with _wrap_errors():
            ids = self.redis.zrangebyscore(
                self.failed_key, self.now() - self.completed_retention_ms, "+inf"
            )
        return [i.decode() for i in ids]

    def prune_failed(self) -> None:
        """Forget failed uploads whose retention is over."""
        with _wrap_errors():
            self.redis.zremrangebyscore(
                self.failed_key, "-inf", f"({self.now() - self.completed_retention_ms}"
            )

    def release(self, upload_id: str, token: str) -> None:
        with _wrap_errors():
            self._release(keys=[self.lock_key(upload_id)], args=[token])

    def extend_lock(self, upload_id: str, token: str) -> bool:
        with _wrap_errors():
            return bool(
                self._extend(keys=[self.lock_key(upload_id)], args=[token, self.lock_timeout_ms])
            )

    def take_lease(self, upload_id: str, token: str, ttl_ms: int) -> bool:
        """The post-processing lease: one worker at a time finalizes an upload."""
        with _wrap_errors():
            return bool(self.redis.set(self.lease_key(upload_id), token, nx=True, px=ttl_ms))

    def drop_lease(self, upload_id: str, token: str) -> None:
        with _wrap_errors():
            self._release(keys=[self.lease_key(upload_id)], args=[token])

    def extend_lease(self, upload_id: str, token: str, ttl_ms: int) -> bool:
        """Renew the post-processing lease; False when it lapsed or another worker holds it."""
        with _wrap_errors():
            return bool(self._extend(keys=[self.lease_key(upload_id)], args=[token, ttl_ms]))

    def presence(self, upload_ids: list[str]) -> dict[str, str]:
        """For each upload: "locked" while a request holds its lock or creation
        marker, else its status ("missing" without a record). One round trip."""
        with _wrap_errors():
            pipe = self.redis.pipeline(transaction=False)
            for upload_id in upload_ids:
                keys = [self.record_key(upload_id), self.lock_key(upload_id)]
                self._presence(keys=keys, client=pipe)
            values = pipe.execute()
        return {i: v.decode() for i, v in zip(upload_ids, values, strict=True)}

    def transition(
        self,
        upload_id: str,
        from_status: str,
        to_status: str,
        *,
        keep_ms: int | None = None,
        **fields: Any,
    ) -> str:
        """Atomically move ``from_status`` -> ``to_status`` and set ``fields``.

        Returns "ok", or the status the record actually has ("missing" when gone).
        ``keep_ms`` resets the record's lifetime from now.
        """
        deadline = "" if keep_ms is None else self.now() + keep_ms
        flat: list[Any] = [from_status, to_status, deadline]
        for key, value in fields.items():
            flat += [key, json.dumps(value) if key == "extra" else value]
        with _wrap_errors():
            return self._transition(keys=[self.record_key(upload_id)], args=flat).decode()

    # -- sweeping ------------------------------------------------------------
    def due_expiries(self, limit: int = 500) -> list[str]:
        """Ids whose expiry time has passed, oldest first."""
        with _wrap_errors():
            ids = self.redis.zrangebyscore(
                self.expiries_key, "-inf", self.now(), start=0, num=limit
            )
        return [i.decode() for i in ids]

    def mark_expired(self, upload_id: str) -> str:
        """ "ok" when the record was live-but-expired and is now marked expired; otherwise why not."""
        now = self.now()
        keys = [self.record_key(upload_id), self.lock_key(upload_id)]
        with _wrap_errors():
            return self._mark_expired(
                keys=keys, args=[now, now + self.expired_retention_ms]
            ).decode()

    def forget_expiry(self, upload_id: str) -> None:
        with _wrap_errors():
            self.redis.zrem(self.expiries_key, upload_id)

    def is_locked(self, upload_id: str) -> bool:
        with _wrap_errors():
            return bool(self.redis.exists(self.lock_key(upload_id)))

    def _record_deadline(self, upload: Upload) -> int:
        if upload.status == UPLOADING:
            return upload.expires + self.expired_retention_ms
        return self.now() + self.completed_retention_ms


def _lock_budget(redis: redis_lib.Redis, configured: int | None) -> int | None:
    """How long after it is sent a lock request may still take the lock (ms).

    Never longer than the client's socket timeout: past it the caller has given
    up on the answer and would never release a lock taken for it.
    """
    kwargs = getattr(getattr(redis, "connection_pool", None), "connection_kwargs", {}) or {}
    socket_timeout = kwargs.get("socket_timeout")
    budgets = [b for b in (configured, socket_timeout and int(socket_timeout * 1000)) if b]
    return min(budgets) if budgets else None
