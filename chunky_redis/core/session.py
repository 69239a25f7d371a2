"""One chunk in flight (see uploads.py for the rules that open it). No Django here.

A session works on the shared context (store, storage, policy, quotas), never on
the service that opened it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

from . import errors as exc
from .checksums import ChunkDigest, ResumableHash, incremental_available
from .context import SyncBehind, UploadContext
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
        chunk_digest: ChunkDigest | None = None,
    ):
        """``token`` holds the upload's lock or, for a new upload, its creation marker.

        ``chunk_digest``: the digest the request announced for its body; ``finish()``
        raises ChunkChecksumMismatch (and records nothing) when the bytes differ.
        The extra whole-file digests are those named in ``upload.digest_states``.
        """
        self.context = context
        self.max_bytes = max_bytes
        self.upload = upload
        self.token: str | None = token
        self.byte_range = byte_range
        self.is_new = is_new
        # An empty body is "no chunk", unless it is an empty file. (A mutant's None survives:
        # the flag is only tested for truth; no pragma, as its True is killed.)
        self.allow_empty = False
        self.quota: Quota | None = None  # a new upload counted against its owner's quota
        if upload.hash_state or (upload.offset == 0 and incremental_available(upload.algorithm)):
            self.hasher: ResumableHash | None = ResumableHash(
                upload.algorithm, upload.hash_state or None
            )
        else:
            self.hasher = None  # pragma: no mutate ("" too: the hasher is only tested for truth)
        self.digest_hashers = _extra_hashers(upload)
        self.chunk_digest = chunk_digest
        self.chunk_hasher = hashlib.new(chunk_digest.algorithm) if chunk_digest else None
        limit = byte_range.length if byte_range else max_bytes
        self._lock_checked = time.monotonic()
        self.began = self._lock_checked  # for the observer; start_chunk() sets an earlier one
        self._behind: SyncBehind | None = None  # a window's sync, started once recorded
        self.writer = context.storage.writer(
            upload.upload_id,
            create=is_new,  # appending never creates: a missing file is an error, not a hole
            start=upload.offset,
            limit=limit,
            on_block=self._on_block(),
            heartbeat=self._heartbeat,
            overflow=self._overflow,
        )
        self._open = True

    def _on_block(self) -> Callable[[bytes], None]:
        """What sees every block: the whole-file digests and the chunk's own."""
        updates: list[Callable[[bytes], None]] = [
            h.update for h in (self.hasher, *self.digest_hashers.values()) if h
        ]
        if self.chunk_hasher is not None:
            updates.append(self.chunk_hasher.update)
        if not updates:
            return _ignore
        if len(updates) == 1:
            return updates[0]

        def update_all(block: bytes) -> None:
            for update in updates:
                update(block)

        return update_all

    def _check_chunk_digest(self) -> None:
        if self.chunk_hasher is None:  # no digest announced (the two are set together)
            return
        assert self.chunk_digest is not None
        computed = self.chunk_hasher.digest()
        if not hmac.compare_digest(computed, self.chunk_digest.expected):
            raise exc.ChunkChecksumMismatch(
                self.chunk_digest.algorithm, self.chunk_digest.expected, computed
            )

    def _digest_states(self) -> dict[str, bytes]:
        return {algorithm: h.serialize() for algorithm, h in self.digest_hashers.items()}

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
            # (A mutant's None survives: the flag is only tested for truth; no pragma, as its
            # True is killed.)
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
        self._check_chunk_digest()
        return received

    def finish(self, *, filename: str = "", extra: dict[str, Any] | None = None) -> Upload:
        """Record the chunk: offset and checksum state advance together, in one step."""
        received = self._check_received()
        if self.is_new:
            upload = self._fill_new(received, filename, extra)
            self.context.admit(upload, self.quota)  # again: a multipart body's size is known now
            self._create(upload)
            self.context.sync_behind(self._behind)
            self.context.observe_chunk(upload, received, self.began, created=True)
            return upload
        upload = self.upload
        hash_state = self.hasher.serialize() if self.hasher else b""
        digest_states = self._digest_states()
        new_offset = upload.offset + received
        policy = self.context.policy
        expires = (
            self.context.store.now() + policy.expiration_ms
            if policy.sliding_expiration
            else upload.expires
        )
        assert self.token is not None
        durable, behind = self.context.durable_fields(upload, new_offset, hash_state)
        result = self.context.store.commit(
            upload,
            self.token,
            new_offset=new_offset,
            hash_state=hash_state,
            expires=expires,
            digest_states=digest_states,
            fields=durable,
        )
        # The commit released the lock, whatever its answer. (A mutant's "" is the same: abort()
        # would release with a token no lock ever holds, which releases nothing.)
        self.token = None  # pragma: no mutate
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
        upload.digest_states.update(digest_states)
        for name, value in durable.items():
            setattr(upload, name, value)
        self.context.sync_behind(behind)
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
        # The marker is gone with the record's creation. (A mutant's "" is the same: abort()
        # would release with a token no lock ever holds, which releases nothing.)
        self.token = None  # pragma: no mutate
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
        upload.digest_states.update(self._digest_states())
        durable, self._behind = self.context.durable_fields(upload, received, upload.hash_state)
        for name, value in durable.items():
            setattr(upload, name, value)
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


def _extra_hashers(upload: Upload) -> dict[str, ResumableHash]:
    """The extra whole-file digests that can go on: a state kept, or nothing received yet.

    One whose state was lost (its record says b"" past byte 0) stays lost: it is
    never continued from the middle of the file.
    """
    hashers: dict[str, ResumableHash] = {}
    for algorithm, state in upload.digest_states.items():
        if algorithm == upload.algorithm:
            continue
        if state or (upload.offset == 0 and incremental_available(algorithm)):
            hashers[algorithm] = ResumableHash(algorithm, state or None)
    return hashers


def clean_checksum(checksum: str, algorithm: str) -> str:
    checksum = (checksum or "").strip().lower()
    if not checksum:
        raise exc.MissingChecksum(f"Completion needs the file's {algorithm} (hex).")
    # (lowercased above: an "X" added around the alphabet by a mutant never matches anything)
    if any(c not in "0123456789abcdef" for c in checksum):  # pragma: no mutate
        raise exc.InvalidChecksum(algorithm)
    return checksum
