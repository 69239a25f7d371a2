"""One chunk in flight (see uploads.py for the rules that open it). No Django here.

A session works on the shared context (store, storage, policy, quotas), never on
the service that opened it.
"""

from __future__ import annotations

import time
from typing import Any

from . import errors as exc
from .checksums import ResumableHash, incremental_available
from .context import UploadContext
from .http import ByteRange
from .quotas import Quota
from .store import PROCESSING, Upload


class ChunkSession:
    """One chunk in flight: where to write it, what it may hold, and how to record it."""

    def __init__(
        self,
        context: UploadContext,
        upload: Upload,
        *,
        token: str,
        byte_range: ByteRange | None,
        max_bytes: int | None,
        is_new: bool = False,
    ):
        """``token`` holds the upload's lock or, for a new upload, its creation marker."""
        self.context = context
        self.max_bytes = max_bytes
        self.upload = upload
        self.token: str | None = token
        self.byte_range = byte_range
        self.is_new = is_new
        self.allow_empty = False  # an empty body is "no chunk", unless it is an empty file
        self.quota: Quota | None = None  # a new upload counted against its owner's quota
        if upload.hash_state or (upload.offset == 0 and incremental_available(upload.algorithm)):
            self.hasher: ResumableHash | None = ResumableHash(
                upload.algorithm, upload.hash_state or None
            )
        else:
            self.hasher = None
        limit = byte_range.length if byte_range else max_bytes
        self._lock_checked = time.monotonic()
        self.began = self._lock_checked  # for the observer; start_chunk() sets an earlier one
        self.writer = context.storage.writer(
            upload.upload_id,
            create=is_new,  # appending never creates: a missing file is an error, not a hole
            start=upload.offset,
            limit=limit,
            on_block=self.hasher.update if self.hasher else _ignore,
            heartbeat=self._heartbeat,
            overflow=self._overflow,
        )
        self._open = True

    @property
    def upload_id(self) -> str:
        return self.upload.upload_id

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    def _overflow(self) -> exc.ChunkyError:
        if self.byte_range is not None:
            return exc.LengthMismatch(
                self.byte_range.length,
                None,
                f"The body carries more than the {self.byte_range.length} bytes its Content-Range announces.",
            )
        return exc.TooLarge(
            None, self.max_bytes
        )  # its default detail: "The file exceeds the size limit."

    def _heartbeat(self) -> None:
        # Renew the lock (or a new upload's creation marker) well before it can
        # lapse; a writer that lost it must not write another byte (another
        # request may own the upload now, or the sweeper may have taken the file).
        store = self.context.store
        if time.monotonic() - self._lock_checked < store.lock_timeout_ms / 3000:
            return
        assert self.token is not None
        if not store.extend_lock(self.upload_id, self.token):
            raise exc.LockLost()
        self._lock_checked = time.monotonic()

    def _close_writer(self, sync: bool) -> int:
        if self._open:
            self._open = False
            self.writer.close(sync=sync)
        return self.writer.written

    def _check_received(self) -> int:
        received = self._close_writer(sync=True)
        if received == 0 and not self.allow_empty:
            raise exc.MissingChunk()
        if self.byte_range is not None and received != self.byte_range.length:
            raise exc.LengthMismatch(
                self.byte_range.length,
                received,
                f"Content-Range announces {self.byte_range.length} bytes but {received} arrived.",
            )
        return received

    def finish(self, *, filename: str = "", extra: dict[str, Any] | None = None) -> Upload:
        """Record the chunk: offset and checksum state advance together, in one step."""
        received = self._check_received()
        if self.is_new:
            upload = self._fill_new(received, filename, extra)
            self.context.admit(upload, self.quota)  # again: a multipart body's size is known now
            self._create(upload)
            self.context.observe_chunk(upload, received, self.began, created=True)
            return upload
        upload = self.upload
        hash_state = self.hasher.serialize() if self.hasher else b""
        new_offset = upload.offset + received
        policy = self.context.policy
        expires = (
            self.context.store.now() + policy.expiration_ms
            if policy.sliding_expiration
            else upload.expires
        )
        assert self.token is not None
        result = self.context.store.commit(
            upload, self.token, new_offset=new_offset, hash_state=hash_state, expires=expires
        )
        self.token = None  # the commit released the lock, whatever its answer
        if result == "lost":
            raise exc.LockLost()
        if result == "expired":
            raise exc.UploadExpired()
        if result != "ok":
            raise exc.UploadLocked(
                "The upload moved while this chunk was written; the chunk was not recorded."
            )
        if expires != upload.expires:
            self.context.touch_quota(upload, expires)
        upload.offset, upload.hash_state, upload.expires = new_offset, hash_state, expires
        self.context.observe_chunk(upload, received, self.began, created=False)
        return upload

    def finish_and_complete(
        self, checksum: str, *, filename: str = "", extra: dict[str, Any] | None = None
    ) -> Upload:
        """A whole file in one request: record it already verified and hand it on."""
        assert self.is_new
        received = self._check_received()
        upload = self._fill_new(received, filename, extra)
        self.context.admit(upload, self.quota)  # its size is known now
        checksum = clean_checksum(checksum, upload.algorithm)
        self.context.verify(upload, checksum)
        upload.status, upload.checksum = PROCESSING, checksum
        upload.queued = self.context.store.now()
        self._create(upload)
        self.context.observe_chunk(upload, received, self.began, created=True)
        self.context.release_quota(upload)
        self.context.hand_off(upload)
        return upload

    def _create(self, upload: Upload) -> None:
        """Turn the creation marker into the record; refused if the marker lapsed
        (the writer stalled), since the sweeper may then have taken the file."""
        assert self.token is not None
        try:
            result = self.context.store.create(upload, self.token)
        except exc.StoreUnavailable:
            # The record may exist (only the reply was lost): keep the file. If it
            # does not, the marker lapses and the sweeper removes the orphan.
            self.is_new = False  # pragma: no mutate (None: is_new is only tested for truth)
            raise
        if result != "ok":
            raise exc.LockLost()
        self.token = None  # the marker is gone with the record's creation
        # recorded: from here on an error must not delete the file. (A mutant's None is
        # equivalent: is_new is only ever tested for truth.)
        self.is_new = False  # pragma: no mutate

    def _fill_new(self, received: int, filename: str, extra: dict[str, Any] | None) -> Upload:
        """A new upload's record, once its first chunk is in storage."""
        upload = self.upload
        upload.offset = received
        upload.size = upload.size or received
        upload.filename, upload.extra = filename, extra or {}
        upload.hash_state = self.hasher.serialize() if self.hasher else b""
        return upload

    def abort(self) -> None:
        """Forget the chunk: nothing recorded changes; a new upload leaves no file behind.

        A new upload's file goes before its creation marker, so that the file
        never outlives both marker and record.
        """
        # sync=True would only make bytes that are being thrown away durable: slower, same outcome.
        self._close_writer(sync=False)  # pragma: no mutate
        if self.is_new:
            self.context.storage.delete(self.upload_id)
            if self.quota is not None:
                self.context.release_quota(self.upload)
        if self.token is not None:
            token, self.token = self.token, None
            self.context.store.release(self.upload_id, token)


def _ignore(_: bytes) -> None:
    pass


def clean_checksum(checksum: str, algorithm: str) -> str:
    checksum = (checksum or "").strip().lower()
    if not checksum:
        raise exc.MissingChecksum(f"Completion needs the file's {algorithm} (hex).")
    # (lowercased above: an "X" added around the alphabet by a mutant never matches anything)
    if any(c not in "0123456789abcdef" for c in checksum):  # pragma: no mutate
        raise exc.InvalidChecksum(algorithm)
    return checksum
