"""The upload session store: one Redis hash per upload, plus a lock key.

No Django here. Every multi-key script touches only the keys of one upload,
which share the hash tag ``{<upload_id>}``, so the scripts run on Redis
Cluster too. The indexes the sweeper reads are in indexes.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

from redis.typing import EncodableT

from . import lua, redis_clock
from .direct_scripts import DirectScript, connections_for
from .errors import StoreUnavailable
from .indexes import SweepIndexes
from .records import (
    COMPLETE,
    CONCAT_PARTS,
    EXPIRED,
    FAILED,
    PROCESSING,
    UNKNOWN_LENGTH,
    UPLOADING,
    Upload,
    digest_fields,
    now_ms,
)
from .records import wrap_errors as _wrap_errors
from .redis_clients import AnyRedis, call_and_wait

__all__ = [
    "COMPLETE",
    "CONCAT_PARTS",
    "EXPIRED",
    "FAILED",
    "PROCESSING",
    "UNKNOWN_LENGTH",
    "UPLOADING",
    "Upload",
    "UploadStore",
    "now_ms",
]


def unpack_fields(lengths: bytes, packed: bytes) -> list[bytes]:
    """ACQUIRE's packed record back into HGETALL's flat list of names and values.

    ``lengths`` lists each item's length, comma-separated; ``packed`` is the items
    end to end. Values may hold any byte (checksum states), so they are cut by length.
    """
    items: list[bytes] = []
    start = 0
    for length in map(int, lengths.split(b",")):
        items.append(packed[start : start + length])
        start += length
    return items


class UploadStore(SweepIndexes):
    """Reads and changes upload records. All times are milliseconds since the epoch."""

    def __init__(
        self,
        redis: AnyRedis,
        *,
        prefix: str = "chunky",
        lock_timeout_ms: int = 30_000,
        expired_retention_ms: int = 86_400_000,
        completed_retention_ms: int = 7 * 86_400_000,
        lock_request_timeout_ms: int | None = 5_000,
        clock: Callable[[], float] = time.time,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ):
        self.redis = redis
        self.prefix = prefix
        self.lock_timeout_ms = lock_timeout_ms
        self.expired_retention_ms = expired_retention_ms
        self.completed_retention_ms = completed_retention_ms
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.lock_request_timeout_ms = redis_clock.lock_budget(redis, lock_request_timeout_ms)
        self.clock = clock
        # A script's reply is typed Any: the annotated locals below say what each one returns.
        # The two scripts of every chunk skip redis-py's command layers (direct_scripts.py).
        connections = connections_for(redis)
        self._acquire = DirectScript(redis, lua.ACQUIRE, connections)
        self._commit = DirectScript(redis, lua.COMMIT, connections)
        self._settle = redis.register_script(lua.SETTLE)
        self._synced = redis.register_script(lua.SYNCED)
        self._mark_processing = redis.register_script(lua.MARK_PROCESSING)
        self._create = redis.register_script(lua.CREATE)
        self._release = redis.register_script(lua.RELEASE)
        self._extend = redis.register_script(lua.EXTEND)
        self._transition = redis.register_script(lua.TRANSITION)
        self._set_length = redis.register_script(lua.SET_LENGTH)
        self._terminate = redis.register_script(lua.TERMINATE)
        self._signals_sent = redis.register_script(lua.SIGNALS_SENT)
        self._register_index_scripts()

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
            # bytes, not str: the clients leave decode_responses off.
            raw = cast(
                "dict[bytes, bytes]",  # pragma: no mutate (a type, for mypy alone)
                self.redis.hgetall(self.record_key(upload_id)),
            )
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
        offset = redis_clock.offset(self.redis)
        budget = self.lock_request_timeout_ms
        sent = self.now()
        deadline = sent + offset + budget if budget is not None and lock else ""
        args: list[EncodableT] = [
            owner,
            token,
            self.lock_timeout_ms,
            sent,
            int(lock),  # "1" or "0" (the script asks only whether it is "1")
            deadline,
        ]
        with _wrap_errors():
            result = self._acquire(keys=keys, args=args)
        code = result[0].decode()
        clock_was_off = redis_clock.learn(self.redis, sent, self.now(), int(result[1]))
        return code, (unpack_fields(result[2], result[3]) if code == "ok" else None), clock_was_off

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
                self.processing.add(upload.upload_id, upload.queued)
            result: str = self._recorded(self._create, keys, flat).decode()
            if result == "ok" and upload.status == UPLOADING:
                self.expiries.add(upload.upload_id, upload.expires)
        if result == "exists":
            raise RuntimeError(f"Upload {upload.upload_id} already exists.")
        return result

    def commit(
        self,
        upload: Upload,
        token: str,
        *,
        new_offset: int,
        hash_state: bytes,
        expires: int,
        digest_states: dict[str, bytes] | None = None,
        fields: dict[str, Any] | None = None,
    ) -> str:
        """Advance offset and checksum states; returns "ok", "lost", "conflict" or "expired".

        ``digest_states`` (the extra whole-file digests) and ``fields`` (deferred
        durability's) are set in the same step.
        The lock is released in the same step, whatever the answer.
        """
        keys = [self.record_key(upload.upload_id), self.lock_key(upload.upload_id)]
        deadline = expires + self.expired_retention_ms
        args: list[Any] = [token, upload.offset, new_offset, hash_state, expires, deadline]
        args.append(self.now())
        for field_name, state in digest_fields(digest_states or {}).items():
            args += [field_name, state]
        for field_name, value in (fields or {}).items():
            args += [field_name, value]
        with _wrap_errors():
            result: str = self._recorded(self._commit, keys, args).decode()
            if result == "ok" and expires != upload.expires:
                self.expiries.add(upload.upload_id, expires)
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
            self.processing.add(upload.upload_id, now)
            result: str = self._mark_processing(
                keys=keys, args=[token, checksum, deadline, now]
            ).decode()
            if result == "ok":
                self.expiries.remove(upload.upload_id)
        if result == "ok":
            upload.queued = now
        return result

    def settle(self, upload_id: str, token: str, offset: int, fields: dict[str, Any]) -> str:
        """Set ``fields`` while we hold the lock (kept) and the offset is still ``offset``:
        "ok", "lost" or "conflict". Recovery after a host crash (durability.py) uses it."""
        keys = [self.record_key(upload_id), self.lock_key(upload_id)]
        args: list[Any] = [token, offset]
        for field_name, value in fields.items():
            args += [field_name, value]
        with _wrap_errors():
            result: str = self._recorded(self._settle, keys, args).decode()
        return result

    def mark_synced(self, upload_id: str, ticket: str, offset: int, state: bytes) -> str:
        """Move the synced point to ``offset`` (state ``state``) for the background sync the
        record names (``ticket``): "ok", or "stale" when the record moved on without it."""
        keys = [self.record_key(upload_id)]
        with _wrap_errors():
            result: str = self._synced(keys=keys, args=[ticket, offset, state]).decode()
        return result

    def set_length(self, upload_id: str, token: str, length: int) -> str:
        """Fix a deferred length under the lock (released): "ok", "lost", "conflict" or "set"."""
        keys = [self.record_key(upload_id), self.lock_key(upload_id)]
        with _wrap_errors():
            result: str = self._set_length(keys=keys, args=[token, length]).decode()
            return result

    def terminate(self, upload_id: str, token: str) -> str:
        """Delete an uploading upload's record under the lock (released): "ok", "lost" or its status."""
        keys = [self.record_key(upload_id), self.lock_key(upload_id)]
        with _wrap_errors():
            result: str = self._terminate(keys=keys, args=[token]).decode()
            if result == "ok":
                self.expiries.remove(upload_id)
        return result

    def lease_ttl_ms(self, upload_id: str) -> int:
        """How long the finalization lease has left (0 when nobody holds it)."""
        with _wrap_errors():
            return max(0, int(self.redis.pttl(self.lease_key(upload_id))))

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
            result: str = self._transition(keys=[self.record_key(upload_id)], args=flat).decode()
            return result

    def signals_sent(self, upload_id: str, status: str, run_id: str) -> str:
        """Record that run ``run_id``, which moved the upload to ``status``, sent its
        signals: "ok", or "other" (another run finished it, or it moved on) or "missing"."""
        with _wrap_errors():
            result: str = self._signals_sent(
                keys=[self.record_key(upload_id)], args=[status, run_id]
            ).decode()
            return result

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
