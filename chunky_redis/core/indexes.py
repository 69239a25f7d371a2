"""The sorted sets that let the sweeper and ``chunky_retry`` find uploads without
scanning Redis, and the sweeper's reads and moves. No Django here.

Each index is written with separate commands, never inside an upload's script
(it is not in the upload's slot): an entry is added *before* the status it
tracks can change, so that a lost reply cannot hide an upload, and entries that
outlived their reason are dropped lazily by whoever reads them. The expiry and
processing indexes, written for every upload, are ShardedIndexes: on Redis
Cluster they spread over the shards. The failed index, written only when an
upload fails, is one sorted set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from . import lua
from .records import FAILED, PROCESSING
from .records import wrap_errors as _wrap_errors
from .redis_clients import AnyRedis, is_cluster
from .sharded_index import ShardedIndex


class SweepIndexes:
    """Mixed into ``UploadStore``, which provides the keys, the clock and the client."""

    redis: AnyRedis
    prefix: str
    completed_retention_ms: int
    expired_retention_ms: int
    now: Callable[[], int]
    record_key: Callable[[str], str]
    lock_key: Callable[[str], str]
    lease_key: Callable[[str], str]

    def _register_index_scripts(self) -> None:
        self._mark_expired: Any = self.redis.register_script(lua.MARK_EXPIRED)
        self._presence: Any = self.redis.register_script(lua.PRESENCE)
        self._requeue: Any = self.redis.register_script(lua.REQUEUE)

    @property
    def expiries(self) -> ShardedIndex:
        """Uploading uploads, scored by when they expire (ms)."""
        return ShardedIndex(self.redis, f"{self.prefix}:expiries")

    @property
    def processing(self) -> ShardedIndex:
        """Uploads handed to post-processing, scored by when (ms): the sweeper's to-do list."""
        return ShardedIndex(self.redis, f"{self.prefix}:processing")

    @property
    def failed_key(self) -> str:
        """Failed uploads, scored by when they failed (ms): what ``chunky_retry --all-failed`` retries."""
        return f"{self.prefix}:failed"

    # -- expiries --------------------------------------------------------------
    def due_expiries(self, limit: int = 500) -> list[str]:  # pragma: no mutate (any batch size)
        """Ids whose expiry time has passed, oldest first."""
        with _wrap_errors():
            return self.expiries.up_to(self.now(), limit)

    def mark_expired(self, upload_id: str) -> str:
        """ "ok" when the record was live-but-expired and is now marked expired; otherwise why not."""
        now = self.now()
        keys = [self.record_key(upload_id), self.lock_key(upload_id)]
        with _wrap_errors():
            result: str = self._mark_expired(
                keys=keys, args=[now, now + self.expired_retention_ms]
            ).decode()
            return result

    def count_in_flight(self) -> int:
        """Uploads in progress: uploading, and not expired (what the metrics call in flight).

        Read from the expiry index, which holds every uploading upload until it is
        marked processing, terminated or swept; one round trip (per shard on a cluster)."""
        with _wrap_errors():
            return self.expiries.count_from(self.now())

    def count_processing(self) -> int:
        """Uploads handed to post-processing that no worker has finished yet."""
        with _wrap_errors():
            return self.processing.size()

    def forget_expiry(self, upload_id: str) -> None:
        with _wrap_errors():
            self.expiries.remove(upload_id)

    def is_locked(self, upload_id: str) -> bool:
        with _wrap_errors():
            return bool(self.redis.exists(self.lock_key(upload_id)))

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

    def presence(self, upload_ids: list[str]) -> dict[str, str]:
        """For each upload: "locked" while a request holds its lock or creation
        marker, else its status ("missing" without a record). One round trip
        (on Redis Cluster one per upload: its pipelines refuse scripts)."""
        keys = [[self.record_key(i), self.lock_key(i)] for i in upload_ids]
        with _wrap_errors():
            if is_cluster(self.redis):  # the sweeper's rare path: orphan files only
                values = [self._presence(keys=k) for k in keys]
            else:
                pipe = self.redis.pipeline(transaction=False)
                for k in keys:
                    self._presence(keys=k, client=pipe)
                values = pipe.execute()
        return {i: v.decode() for i, v in zip(upload_ids, values, strict=True)}

    # -- processing and failed uploads ---------------------------------------
    def requeue(self, upload_id: str, grace_ms: int) -> str:
        """May post-processing be queued again? "ok" (stamped as queued now) when the
        upload is processing, no worker holds its lease and it was queued more than
        ``grace_ms`` ago; otherwise "leased", "fresh", "missing" or its status."""
        keys = [self.record_key(upload_id), self.lease_key(upload_id)]
        with _wrap_errors():
            result: str = self._requeue(keys=keys, args=[self.now(), grace_ms]).decode()
            if result in ("ok", "leased", "fresh"):  # looked at again after another grace
                self.processing.add(upload_id, self.now())
            else:  # finished, or never got to processing: nothing to watch
                self.processing.remove(upload_id)
        return result

    def due_processing(
        self,
        queued_before_ms: int,
        limit: int = 500,  # pragma: no mutate (any batch size)
    ) -> list[str]:
        """Ids in the processing index queued before ``queued_before_ms``, oldest first."""
        with _wrap_errors():
            return self.processing.up_to(queued_before_ms, limit)

    def index_status(self, upload_id: str, status: str) -> None:
        """Keep the indexes in step with a status post-processing gave the upload:
        processing ones in the processing index, failed ones in the failed one."""
        with _wrap_errors():
            pipe = self.redis.pipeline(transaction=False)
            if status == PROCESSING:
                # (the pipeline saves round trips; without it the commands are the same)
                self.processing.add(
                    upload_id,
                    self.now(),
                    client=pipe,  # pragma: no mutate
                )
            else:
                self.processing.remove(upload_id, client=pipe)  # pragma: no mutate (as above)
            if status == FAILED:
                pipe.zadd(self.failed_key, {upload_id: self.now()})
            else:
                pipe.zrem(self.failed_key, upload_id)
            pipe.execute()

    def failed_ids(self) -> list[str]:
        """Failed uploads whose record may still exist (the sweeper prunes the rest)."""
        with _wrap_errors():
            # Members only (no scores), as bytes: the clients leave decode_responses off.
            ids = cast(
                "list[bytes]",  # pragma: no mutate (a type, for mypy alone)
                self.redis.zrangebyscore(
                    self.failed_key,
                    self.now() - self.completed_retention_ms,
                    "+inf",  # pragma: no mutate (Redis reads "+INF" the same)
                ),
            )
        return [i.decode() for i in ids]

    def prune_failed(self) -> None:
        """Forget failed uploads whose retention is over."""
        with _wrap_errors():
            self.redis.zremrangebyscore(
                self.failed_key,
                "-inf",  # pragma: no mutate (Redis reads "-INF" the same)
                f"({self.now() - self.completed_retention_ms}",
            )
