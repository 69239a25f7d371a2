"""What the upload service and its chunk sessions share. No Django here.

The service (uploads.py) opens chunk sessions (session.py); both work on the
same store, storage, policy, quotas and completion hand-off, which live here so
that neither module needs the other's class.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import durability
from . import errors as exc
from .checksums import ResumableHash
from .durability import host_boot_id
from .observer import NO_OBSERVER, UploadObserver
from .quotas import Quota, QuotaTracker
from .records import digest_fields
from .storage import ChunkStorage
from .store import FAILED, PROCESSING, UPLOADING, Upload, UploadStore

logger = logging.getLogger("chunky_redis")


@dataclass
class Policy:
    algorithm: str = "md5"
    expiration_ms: int = 86_400_000
    sliding_expiration: bool = False
    requeue_after_ms: int = 60_000  # see UploadService.complete()
    # Deferred durability (durability.py): 0 syncs every chunk before it is recorded; above 0,
    # the chunk storage is synced once this many bytes are unsynced, and at the upload's end.
    sync_every: int = 0
    boot: str = field(default_factory=host_boot_id)  # this host's, in records of unsynced bytes


@dataclass
class SyncBehind:
    """A window's sync, run after the chunk that filled the window was answered: the file is
    synced, then the record's synced point moves to ``offset`` (checksum state ``state``)."""

    upload_id: str
    offset: int
    state: bytes
    ticket: str


def in_background(job: Callable[[], None]) -> None:
    """Run ``job`` beside the requests: a thread (a greenlet under gevent's monkey-patching,
    whose file syscalls then go to the native pool: filesystem.py)."""
    threading.Thread(target=job, name="chunky-sync-behind", daemon=True).start()


@dataclass
class UploadContext:
    """``on_complete`` receives each upload once it is verified and marked processing;
    the Django layer injects the Celery hand-off, a plain Python host its own.
    ``observer`` is told of every recorded chunk (metrics); the default does nothing."""

    store: UploadStore
    storage: ChunkStorage
    policy: Policy
    on_complete: Callable[[Upload], None]
    quotas: QuotaTracker | None = None
    observer: UploadObserver = NO_OBSERVER
    # How a window's sync runs after its chunk was answered (tests run it when they choose).
    run_behind: Callable[[Callable[[], None]], None] = in_background
    # The uploads whose window sync runs in this process now: one at a time for each.
    _syncing: set[str] = field(default_factory=set, repr=False, compare=False)
    _syncing_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def lock(self, owner: str, upload_id: str) -> tuple[str, Upload]:
        """Take the upload's lock (owner and expiry checked in the same step)."""
        token = secrets.token_hex(16)  # pragma: no mutate (any unguessable length will do)
        code, upload = self.store.acquire(upload_id, owner, token)
        raise_for(code)
        assert upload is not None
        if durability.unsure(upload, self.policy.boot):
            try:
                self._recover(upload, token)
            except BaseException:
                self.store.release(upload_id, token)
                raise
        return token, upload

    def _recover(self, upload: Upload, token: str) -> None:
        """Bytes another boot left unsynced: keep them if they check out, else go back."""
        if durability.tail_matches(self.storage, upload):
            fields: dict[str, Any] = {"durable": upload.offset, "durable_state": upload.hash_state}
            logger.info("chunky_redis: unsynced bytes of %s checked and synced", upload.upload_id)
        else:
            fields = {"offset": upload.durable, "hash_state": upload.durable_state}
            fields.update(digest_fields({a: b"" for a in upload.digest_states}))
            logger.warning(
                "chunky_redis: upload %s goes back from %s to its synced offset %s",
                upload.upload_id,
                upload.offset,
                upload.durable,
            )
        fields["boot"] = ""
        fields["sync_ticket"] = ""  # a sync still running elsewhere must not mark older bytes
        result = self.store.settle(upload.upload_id, token, upload.offset, fields)
        if result == "lost":
            raise exc.LockLost()
        if result != "ok":
            raise exc.UploadLocked("The upload moved while it was checked; try again.")
        if "offset" in fields:
            upload.offset, upload.hash_state = upload.durable, upload.durable_state
            upload.digest_states = {a: b"" for a in upload.digest_states}
        upload.durable, upload.durable_state, upload.boot = upload.offset, upload.hash_state, ""
        upload.sync_ticket = ""

    def durable_fields(
        self, upload: Upload, new_offset: int, hash_state: bytes
    ) -> tuple[dict[str, Any], SyncBehind | None]:
        """Deferred durability: the record's fields for a chunk that ends at ``new_offset``.

        The chunk that reaches the upload's end syncs the file before it is recorded (nothing
        is completed unsynced). Otherwise the bytes past ``durable`` are marked as this boot's,
        and the chunk that fills the window names a sync to run once it is recorded (returned;
        ``sync_behind()`` starts it), unless this process already runs one for the upload.
        """
        every = self.policy.sync_every
        if not every:
            return {}, None
        if upload.length_known and new_offset >= upload.size:
            self.storage.sync(upload.upload_id)
            return {"durable": new_offset, "durable_state": hash_state, "boot": ""}, None
        fields: dict[str, Any] = {"boot": self.policy.boot}
        if new_offset - upload.durable < every or upload.upload_id in self._syncing:
            return fields, None
        ticket = secrets.token_hex(8)  # pragma: no mutate (any length tells syncs apart)
        fields["sync_ticket"] = ticket
        return fields, SyncBehind(upload.upload_id, new_offset, hash_state, ticket)

    def sync_behind(self, job: SyncBehind | None) -> None:
        """Start a window's sync once its chunk is recorded (never before: a chunk that was
        not recorded must not have its checksum state named as the synced one)."""
        if job is None:
            return
        with self._syncing_lock:
            if job.upload_id in self._syncing:
                return  # another request of this process started one first; it will do
            self._syncing.add(job.upload_id)
        try:
            self.run_behind(functools.partial(self._run_sync, job))
        except Exception as e:  # no thread to be had: the next window's chunk tries again
            self._syncing.discard(job.upload_id)
            logger.warning("chunky_redis: cannot start the sync of %s: %s", job.upload_id, e)

    def _run_sync(self, job: SyncBehind) -> None:
        try:
            self.storage.sync(job.upload_id)
            self.store.mark_synced(job.upload_id, job.ticket, job.offset, job.state)
        except exc.ChunkFileMissing:
            pass  # the upload is gone (completed, terminated, swept): nothing to keep
        except Exception as e:  # the bytes stay marked unsynced: recovery rechecks them
            logger.warning("chunky_redis: the background sync of %s failed: %s", job.upload_id, e)
        finally:
            self._syncing.discard(job.upload_id)

    def admit(self, upload: Upload, quota: Quota | None) -> None:
        """Count a new upload against its owner's quota, or refuse it."""
        if quota is None or self.quotas is None:
            return
        self.quotas.admit(
            upload.owner,
            upload.upload_id,
            size=max(upload.size, 0),  # a deferred length counts once declared
            expires=upload.expires,
            quota=quota,
            statuses=self.store.statuses,
        )

    def release_quota(self, upload: Upload) -> None:
        """The upload is no longer in flight (completed, or never created)."""
        if self.quotas is not None:
            self._best_effort(self.quotas.release, upload.owner, upload.upload_id)

    def touch_quota(self, upload: Upload, expires: int) -> None:
        """A sliding expiration moved: the upload stays counted until its new expiry."""
        if self.quotas is not None:
            self._best_effort(self.quotas.touch, upload.owner, upload.upload_id, expires)

    @staticmethod
    def _best_effort(update: Callable[..., None], *args: Any) -> None:
        # The upload's own change is already recorded; a missed index update heals at the
        # upload's expiry (or at the next refusal), so it must not fail the request.
        try:
            update(*args)
        except exc.StoreUnavailable as e:
            logger.warning("chunky_redis: quota index not updated for %s: %s", args[1], e)

    def hand_off(self, upload: Upload) -> None:
        """Queue post-processing; if that fails, the upload can be completed again."""
        try:
            self.on_complete(upload)
        except Exception as e:
            self.store.transition(upload.upload_id, PROCESSING, UPLOADING)
            upload.status = UPLOADING
            raise exc.QueueUnavailable() from e

    def observe_chunk(self, upload: Upload, received: int, began: float, created: bool) -> None:
        """Tell the observer of a recorded chunk (``began``: ``time.monotonic()`` at its start).

        The chunk is recorded already: an observer that fails is logged, never raised."""
        if self.observer is NO_OBSERVER:
            return
        try:
            self.observer.chunk_recorded(upload, received, time.monotonic() - began, created)
        except Exception:
            logger.exception("chunky_redis: the upload observer failed")

    def verify(self, upload: Upload, checksum: str) -> None:
        if not upload.hash_state:
            return  # No incremental state here: post-processing verifies by reading the file.
        ours = ResumableHash(upload.algorithm, upload.hash_state).hexdigest()
        if not hmac.compare_digest(ours, checksum):
            raise exc.ChecksumMismatch(upload.algorithm)


def raise_for(code: str) -> None:
    if code == "ok":
        return
    if code == "missing":
        raise exc.UploadNotFound()
    if code == "expired":
        raise exc.UploadExpired()
    if code == "locked":
        raise exc.UploadLocked()
    if code == "late":
        raise exc.StoreUnavailable("Redis answered too late; try again.")
    raise exc.StoreUnavailable(f"Unexpected answer from the store: {code}.")


def require_uploading(upload: Upload) -> None:
    if upload.status == UPLOADING:
        return
    if upload.status == FAILED:
        raise exc.UploadFailed(upload.reason, upload.status)
    raise exc.AlreadyComplete(status=upload.status)
