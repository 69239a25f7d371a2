"""The upload session store: one Redis hash per upload, plus a lock key.

No Django here. Every multi-key script touches only the keys of one upload,
which share the hash tag ``{<upload_id>}``, so the scripts run on Redis
Cluster too. The index of expiry times (for the sweeper) is a ShardedIndex,
written with separate commands: on a cluster it spreads over the shards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib
from redis.exceptions import ClusterError, RedisClusterException

from . import lua
from .exceptions import StoreUnavailable
from .redis_clients import AnyRedis, call_and_wait
from .sharded_index import ShardedIndex

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
    extra: dict[str, Any] = field(default_factory=dict)

    _INT_FIELDS = ("size", "offset", "created", "expires", "completed")

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
    except (ClusterError, RedisClusterException) as e:
        # no node answers for a slot, or a slot mid-migration kept saying TRYAGAIN
        raise StoreUnavailable(f"Redis Cluster is unavailable: {e}") from e


def now_ms(clock: Callable[[], float] = time.time) -> int:
    return int(clock() * 1000)


class UploadStore:
    """Reads and changes upload records. All times are milliseconds since the epoch."""

    def __init__(
        self,
        redis: AnyRedis,
        *,
        prefix: str = "chunky",
        lock_timeout_ms: int = 30_000,
        expired_retention_ms: int = 86_400_000,
        completed_retention_ms: int = 7 * 86_400_000,
        clock: Callable[[], float] = time.time,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ):
        self.redis = redis
        self.prefix = prefix
        self.lock_timeout_ms = lock_timeout_ms
        self.expired_retention_ms = expired_retention_ms
        self.completed_retention_ms = completed_retention_ms
        self.clock = clock
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        # the sweep index: when each uploading upload expires
        self.expiries = ShardedIndex(redis, f"{prefix}:expiries")
        self._acquire = redis.register_script(lua.ACQUIRE)
        self._commit = redis.register_script(lua.COMMIT)
        self._mark_processing = redis.register_script(lua.MARK_PROCESSING)
        self._create = redis.register_script(lua.CREATE)
        self._release = redis.register_script(lua.RELEASE)
        self._extend = redis.register_script(lua.EXTEND)
        self._transition = redis.register_script(lua.TRANSITION)
        self._mark_expired = redis.register_script(lua.MARK_EXPIRED)

    # -- keys ----------------------------------------------------------------
    def record_key(self, upload_id: str) -> str:
        return f"{self.prefix}:{{{upload_id}}}:upload"

    def lock_key(self, upload_id: str) -> str:
        return f"{self.prefix}:{{{upload_id}}}:lock"

    def lease_key(self, upload_id: str) -> str:
        return f"{self.prefix}:{{{upload_id}}}:finalize"

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
        "missing" (or not the owner's), "expired", "locked".
        """
        keys = [self.record_key(upload_id), self.lock_key(upload_id)]
        args = [owner, token, self.lock_timeout_ms, self.now(), "1" if lock else "0"]
        with _wrap_errors():
            result = self._acquire(keys=keys, args=args)
        code = result[0].decode()
        if code != "ok":
            return code, None
        return code, Upload.from_redis(upload_id, result[1])

    # -- writes --------------------------------------------------------------
    def create(self, upload: Upload) -> None:
        """Store a new record; its Redis TTL runs to ``expires`` plus the expired retention."""
        fields = upload.to_redis()
        flat: list[Any] = [self._record_deadline(upload)]
        for key, value in fields.items():
            flat += [key, value]
        with _wrap_errors():
            result = self._recorded(self._create, [self.record_key(upload.upload_id)], flat)
            if result != b"exists" and upload.status == UPLOADING:
                self.expiries.add(upload.upload_id, upload.expires)
        if result == b"exists":
            raise RuntimeError(f"Upload {upload.upload_id} already exists.")

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
            result = self._recorded(self._commit, keys, args).decode()
            if result == "ok" and expires != upload.expires:
                self.expiries.add(upload.upload_id, expires)
        return result

    def mark_processing(self, upload: Upload, token: str, checksum: str) -> str:
        keys = [self.record_key(upload.upload_id), self.lock_key(upload.upload_id)]
        deadline = self.now() + self.completed_retention_ms
        with _wrap_errors():
            result = self._mark_processing(keys=keys, args=[token, checksum, deadline]).decode()
            if result == "ok":
                self.expiries.remove(upload.upload_id)
        return result

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

    def statuses(self, upload_ids: list[str]) -> dict[str, str | None]:
        """The status of each upload (None when it has no record), in one round trip."""
        with _wrap_errors():
            pipe = self.redis.pipeline(transaction=False)
            for upload_id in upload_ids:
                pipe.hget(self.record_key(upload_id), "status")
            values = pipe.execute()
        return {
            i: (v.decode() if v is not None else None)
            for i, v in zip(upload_ids, values, strict=True)
        }

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
            return self.expiries.up_to(self.now(), limit)

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
            self.expiries.remove(upload_id)

    def is_locked(self, upload_id: str) -> bool:
        with _wrap_errors():
            return bool(self.redis.exists(self.lock_key(upload_id)))

    def _recorded(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a script that records progress the client is told about.

        With ``wait_replicas``, the answer waits until that many replicas have the
        write (Redis WAIT): a failover can then no longer take it back. When they
        do not within ``wait_timeout_ms``, StoreUnavailable: the client gets a 503
        and asks for the offset, which the primary holds.
        """
        if not self.wait_replicas:
            return script(keys=keys, args=args)
        result, acked = call_and_wait(
            self.redis, script, keys, args, self.wait_replicas, self.wait_timeout_ms
        )
        if result == b"ok" and acked < self.wait_replicas:
            raise StoreUnavailable(
                f"Only {acked} of {self.wait_replicas} Redis replica(s) acknowledged the write "
                f"within {self.wait_timeout_ms} ms."
            )
        return result

    def _record_deadline(self, upload: Upload) -> int:
        if upload.status == UPLOADING:
            return upload.expires + self.expired_retention_ms
        return self.now() + self.completed_retention_ms
