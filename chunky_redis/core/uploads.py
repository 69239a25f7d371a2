"""The upload protocol's rules, on top of the store and the chunk storage. No Django here.

A chunk goes through ``UploadService.start_chunk()`` -> ``ChunkSession.write()``
(repeatedly) -> ``ChunkSession.finish()``. Every check that can fail on what
the client declared runs before the first byte is written; the record only
moves once the bytes are in storage.

What the tus and IETF dialects use (stable API):

- ``create(owner=, length=None|n, max_bytes=, filename=, extra=, digests=("sha256",))``
  (lifecycle.py): an upload with no byte yet; ``digests`` are whole-file digests computed
  while streaming beside ``Policy.algorithm``, each with its state in the Redis record.
- ``start_append(owner=, upload_id=, offset=, length=, max_bytes=, length_unknown_ok=,
  chunk_digest=ChunkDigest(algorithm, raw_bytes), keep_partial=)`` -> ChunkSession: ``write()`` the body,
  ``finish()``; on an error ``abort()``. A body whose digest differs from ``chunk_digest``
  raises ChunkChecksumMismatch in ``finish()`` and records nothing (the next append at that
  offset overwrites its bytes); an algorithm outside md5/sha1/sha256/sha512 UnsupportedDigest.
- ``declare_length()``, ``terminate()`` (lifecycle.py); ``status()`` for HEAD.
- ``complete(owner=, upload_id=, checksum=None)``: completion without a client digest
  (the server's own is recorded), through the same ``on_complete`` hand-off.
- ``Upload.hexdigest(algorithm)`` / ``Upload.digests``: each digest from its state, no file read.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from collections.abc import Callable, Sequence

from . import durability
from . import errors as exc
from .appends import Appends
from .checksums import ChunkDigest, check_algorithms
from .concatenation import Concatenation
from .context import Policy, UploadContext, raise_for, require_uploading
from .http import ByteRange
from .lifecycle import Lifecycle
from .observer import NO_OBSERVER, UploadObserver
from .quotas import Quota, QuotaTracker
from .session import ChunkSession, clean_checksum
from .storage import ChunkStorage
from .store import CONCAT_PARTS, PROCESSING, Upload, UploadStore

__all__ = ["ChunkSession", "Policy", "UploadService"]


class UploadService(Lifecycle, Appends, Concatenation):
    def __init__(
        self,
        *,
        store: UploadStore,
        storage: ChunkStorage,
        policy: Policy,
        on_complete: Callable[[Upload], None],
        quotas: QuotaTracker | None = None,
        observer: UploadObserver = NO_OBSERVER,
    ):
        self.context = UploadContext(
            store=store,
            storage=storage,
            policy=policy,
            on_complete=on_complete,
            quotas=quotas,
            observer=observer,
        )

    # The parts live in the context that chunk sessions share; setting one here
    # (an embedding application swapping ``on_complete``) changes it for them too.
    @property
    def store(self) -> UploadStore:
        return self.context.store

    @property
    def storage(self) -> ChunkStorage:
        return self.context.storage

    @property
    def policy(self) -> Policy:
        return self.context.policy

    @property
    def quotas(self) -> QuotaTracker | None:
        return self.context.quotas

    @property
    def on_complete(self) -> Callable[[Upload], None]:
        return self.context.on_complete

    @on_complete.setter
    def on_complete(self, on_complete: Callable[[Upload], None]) -> None:
        self.context.on_complete = on_complete

    # -- reads ---------------------------------------------------------------
    def status(self, *, owner: str, upload_id: str) -> Upload:
        # Without the lock no token is used, and any false value is no lock.
        code, upload = self.store.acquire(
            upload_id,
            owner,
            "",  # pragma: no mutate
            lock=False,  # pragma: no mutate
        )
        raise_for(code)
        assert upload is not None
        return durability.reported(upload, self.policy.boot)

    # -- chunks --------------------------------------------------------------
    def start_chunk(
        self,
        *,
        owner: str,
        upload_id: str | None,
        byte_range: ByteRange | None,
        length: int | None,
        max_bytes: int | None,
        empty_file_ok: bool = False,
        quota: Quota | None = None,
        chunk_digest: ChunkDigest | None = None,
        digests: Sequence[str] = (),
    ) -> ChunkSession:
        """Validate a chunk's headers and prepare to write it.

        ``length`` is the body's length when the request says it (a raw body's
        Content-Length); for multipart it is None and checked after parsing.
        ``empty_file_ok``: a new upload without Content-Range may be an empty
        file (the request names a file but carries no byte).
        ``chunk_digest``: the digest announced for this request's body (see
        ChunkSession). ``digests``: for a new upload, the whole-file digests to
        compute while streaming beside the policy's algorithm (``Upload.hexdigest()``).
        """
        check_algorithms(chunk_digest, digests)
        began = time.monotonic()  # the observer's chunk duration counts the lock in
        empty_file_ok = empty_file_ok and upload_id is None and byte_range is None
        if byte_range is None and length is not None:
            if length == 0 and not empty_file_ok:
                raise exc.MissingChunk()
            if length:
                byte_range = ByteRange(0, length - 1, length)
        if byte_range is not None:
            if max_bytes is not None and byte_range.total > max_bytes:
                raise exc.TooLarge(byte_range.total, max_bytes)
            if length is not None and length != byte_range.length:
                raise exc.LengthMismatch(
                    byte_range.length,
                    length,
                    f"Content-Range announces {byte_range.length} bytes but the body has {length}.",
                )
        if upload_id is None:
            size = byte_range.total if byte_range else 0
            session = self._start_new(
                owner,
                byte_range,
                max_bytes,
                size=size,
                quota=quota,
                chunk_digest=chunk_digest,
                digests=digests,
            )
            session.allow_empty = empty_file_ok
        else:
            # max_bytes is checked above, against the range's total: past that, an existing
            # upload's chunk always has a range (its size's when none came), its only limit
            session = self._start_existing(owner, upload_id, byte_range, chunk_digest=chunk_digest)
        session.began = began
        return session

    def _start_new(
        self,
        owner: str,
        byte_range: ByteRange | None,
        max_bytes: int | None,
        *,
        size: int,
        quota: Quota | None,
        chunk_digest: ChunkDigest | None = None,
        digests: Sequence[str] = (),
    ) -> ChunkSession:
        session = self._open_new(owner, byte_range, max_bytes, size, chunk_digest, digests)
        if quota is not None and not quota.unlimited and self.quotas is not None:
            try:
                # With its size when known, else 0 for now.
                self.context.admit(session.upload, quota)
            except BaseException:
                session.abort()  # nothing was written: the new file goes
                raise
            session.quota = quota
        return session

    def _open_new(
        self,
        owner: str,
        byte_range: ByteRange | None,
        max_bytes: int | None,
        size: int,
        chunk_digest: ChunkDigest | None,
        digests: Sequence[str],
    ) -> ChunkSession:
        if byte_range is not None and byte_range.start != 0:
            raise exc.OffsetMismatch(0, byte_range.start, "A new upload must start at byte 0.")
        now = self.store.now()
        # (Mutants of 16 that keep a token_hex, None or 17, are equivalent: any unguessable
        # length will do.)
        upload_id, token = uuid.uuid4().hex, secrets.token_hex(16)
        if not self.store.claim_new(upload_id, token):  # a fresh uuid4: never taken
            raise exc.StoreUnavailable("Could not mark the new upload; try again.")
        upload = Upload(
            upload_id=upload_id,
            owner=owner,
            size=size,
            created=now,
            expires=now + self.policy.expiration_ms,
            algorithm=self.policy.algorithm,
            digest_states={a: b"" for a in digests if a != self.policy.algorithm},
        )
        try:
            return ChunkSession(
                self.context,
                upload,
                token=token,
                byte_range=byte_range,
                max_bytes=max_bytes,
                is_new=True,
                chunk_digest=chunk_digest,
            )
        except BaseException:
            self.store.release(upload_id, token)
            raise

    def _start_existing(
        self,
        owner: str,
        upload_id: str,
        byte_range: ByteRange | None,
        *,
        chunk_digest: ChunkDigest | None = None,
    ) -> ChunkSession:
        token, upload = self._lock(owner, upload_id)
        try:
            require_uploading(upload)
            if not upload.length_known:
                # Appending before the length is declared is a dialect's own call (tus).
                raise exc.BadContentRange(
                    "This upload's length is not declared yet.", code="length_unknown"
                )
            if byte_range is None:
                # No Content-Range: the body is the whole file, of unknown length.
                byte_range_start = 0
            else:
                if byte_range.total != upload.size:
                    raise exc.TotalChanged(byte_range.total, upload.size)
                byte_range_start = byte_range.start
            if byte_range_start != upload.offset:
                raise exc.OffsetMismatch(upload.offset, byte_range_start)
            if byte_range is None:
                byte_range = ByteRange(
                    0,
                    upload.size - 1,
                    upload.size,  # pragma: no mutate (a session reads a range's start and length)
                )
            return ChunkSession(
                self.context,
                upload,
                token=token,
                byte_range=byte_range,
                max_bytes=None,  # with a byte range the range is the limit
                chunk_digest=chunk_digest,
            )
        except BaseException:
            self.store.release(upload_id, token)
            raise

    def _lock(self, owner: str, upload_id: str) -> tuple[str, Upload]:
        return self.context.lock(owner, upload_id)

    # -- completion ----------------------------------------------------------
    def complete(self, *, owner: str, upload_id: str, checksum: str | None) -> Upload:
        """Check the client's digest against ours and hand the upload to post-processing.

        ``checksum`` None: the dialect has no whole-file digest from the client (tus:
        the upload completes when its offset reaches its length); the server's own
        digest is recorded as the checksum, from the streaming state, or read from
        the stored bytes where no state is kept.

        Completing twice never runs the completion twice: the status moves
        uploading -> processing under the lock, exactly once. A retried
        completion (same checksum) of an upload still in processing, that no
        worker is finalizing and that was queued more than ``requeue_after_ms``
        ago, queues it again and answers as the first did: the first hand-off
        may have been lost (a reply lost, a process killed between marking and
        queueing). Sooner, it answers already_complete.
        """
        token, upload = self._lock(owner, upload_id)
        if upload.status == PROCESSING:
            self.store.release(upload_id, token)
            return self._complete_again(upload, checksum)
        try:
            require_uploading(upload)
            if upload.offset < upload.size or not upload.length_known:
                raise exc.UploadIncomplete(upload.offset, upload.size)
            if checksum is None and upload.extra.get(CONCAT_PARTS):
                checksum = ""  # a concatenation: the worker computes it from the parts
            else:
                if checksum is None:
                    checksum = self._own_digest(upload)
                checksum = clean_checksum(checksum, upload.algorithm)
                self.context.verify(upload, checksum)
            # The record names a boot while bytes past ``durable`` are unsynced (the lock
            # settled another boot's already): whatever the policy is now, as a restart may
            # have turned deferred durability off since they were written.
            if upload.boot:
                self.storage.sync(upload_id)  # nothing leaves for post-processing unsynced
            result = self.store.mark_processing(upload, token, checksum)
        except BaseException:
            self.store.release(upload_id, token)
            raise
        if result == "lost":
            raise exc.LockLost()
        if result != "ok":
            raise exc.AlreadyComplete()
        upload.status, upload.checksum = PROCESSING, checksum
        self.context.release_quota(upload)
        self.context.hand_off(upload)
        return upload

    def _own_digest(self, upload: Upload) -> str:
        digest = upload.hexdigest(upload.algorithm)
        if digest is None:
            digest = self.storage.digest(upload.upload_id, upload.algorithm, upload.size)
        return digest

    def _complete_again(self, upload: Upload, checksum: str | None) -> Upload:
        checksum = clean_checksum(
            upload.checksum if checksum is None else checksum, upload.algorithm
        )
        if not hmac.compare_digest(checksum, upload.checksum):
            raise exc.AlreadyComplete(status=upload.status)
        if self.store.requeue(upload.upload_id, self.policy.requeue_after_ms) != "ok":
            raise exc.AlreadyComplete(status=upload.status)  # being finalized, or just queued
        self.context.hand_off(upload)
        return upload
