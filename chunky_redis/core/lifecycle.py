"""Creating an upload without data, declaring a deferred length, terminating. No Django here.

What the tus and IETF dialects need beyond the chunky dialect's requests, once,
for all of them. Mixed into ``UploadService`` (uploads.py), which provides the
context and the way to open a new upload.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from . import errors as exc
from .checksums import check_algorithms
from .context import UploadContext, require_uploading
from .quotas import Quota
from .session import ChunkSession
from .store import UNKNOWN_LENGTH, Upload


class Lifecycle:
    context: UploadContext
    _start_new: Callable[..., ChunkSession]  # UploadService._start_new

    def create(
        self,
        *,
        owner: str,
        length: int | None,
        max_bytes: int | None,
        quota: Quota | None = None,
        filename: str = "",
        extra: dict[str, Any] | None = None,
        digests: Sequence[str] = (),
    ) -> Upload:
        """A new upload with no byte yet: its (empty) file and its record.

        ``length`` None defers the length: ``declare_length()`` fixes it later,
        once, and the upload cannot complete before. ``digests``: whole-file
        digests to compute while streaming beside the policy's algorithm.
        """
        check_algorithms(None, digests)
        if length is not None:
            if length < 0:
                raise exc.BadContentRange("A length cannot be negative.")
            if max_bytes is not None and length > max_bytes:
                raise exc.TooLarge(length, max_bytes)
        size = UNKNOWN_LENGTH if length is None else length
        session = self._start_new(
            owner,
            None,
            max_bytes,  # pragma: no mutate (no byte is written here: no limit is reached)
            size=size,
            quota=quota,
            digests=digests,
        )
        session.allow_empty = True
        try:
            return session.finish(filename=filename, extra=extra)
        except BaseException:
            session.abort()
            raise

    def declare_length(
        self,
        *,
        owner: str,
        upload_id: str,
        length: int,
        max_bytes: int | None,
        quota: Quota | None = None,
    ) -> Upload:
        """Fix a deferred length. Declaring the same length again is harmless; another is refused."""
        if length < 0:
            raise exc.BadContentRange("A length cannot be negative.")
        if max_bytes is not None and length > max_bytes:
            raise exc.TooLarge(length, max_bytes)
        token, upload = self.context.lock(owner, upload_id)
        try:
            require_uploading(upload)
            if upload.length_known:
                if upload.size != length:
                    raise exc.TotalChanged(length, upload.size)
            elif length < upload.offset:
                raise exc.LengthMismatch(
                    length,
                    upload.offset,
                    f"{upload.offset} bytes have been received; the length cannot be {length}.",
                )
            else:
                declared = Upload(**{**upload.__dict__, "size": length})
                self.context.admit(declared, quota)  # its bytes count against the quota from now on
        except BaseException:
            self.context.store.release(upload_id, token)
            raise
        if upload.length_known:  # the same length again: nothing to change
            self.context.store.release(upload_id, token)
            return upload
        result = self.context.store.set_length(upload_id, token, length)  # releases the lock
        if result == "lost":
            raise exc.LockLost()
        if result != "ok":  # the lock held: nothing else could have moved the record
            raise exc.UploadLocked("The upload moved while its length was declared.")
        upload.size = length
        return upload

    def terminate(self, *, owner: str, upload_id: str) -> None:
        """Stop an upload in progress: its record and its bytes go, its quota is released.

        An upload already handed to post-processing is not terminated (AlreadyComplete).
        """
        token, upload = self.context.lock(owner, upload_id)
        try:
            require_uploading(upload)
        except BaseException:
            self.context.store.release(upload_id, token)
            raise
        result = self.context.store.terminate(upload_id, token)  # releases the lock
        if result == "lost":
            raise exc.LockLost()
        if result == "missing":
            raise exc.UploadNotFound()
        if result != "ok":
            raise exc.AlreadyComplete(status=result)
        # After the record: should this process die here, the file is an orphan for the sweeper.
        self.context.storage.delete(upload_id)
        self.context.release_quota(upload)
