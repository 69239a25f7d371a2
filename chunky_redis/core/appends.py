"""Appending a body at an offset, for the tus and IETF dialects. No Django here.

Mixed into ``UploadService`` (uploads.py): the chunky dialect's chunks go through
``start_chunk()``, with their Content-Range; these appends name their offset, may come
before the length is declared, and may keep a body cut short.
"""

from __future__ import annotations

import time

from . import errors as exc
from .checksums import ChunkDigest, check_algorithms
from .context import UploadContext, require_uploading
from .http import ByteRange
from .session import ChunkSession
from .store import CONCAT_PARTS


class Appends:
    context: UploadContext

    def start_append(
        self,
        *,
        owner: str,
        upload_id: str,
        offset: int,
        length: int | None,
        max_bytes: int | None,
        length_unknown_ok: bool = False,
        chunk_digest: ChunkDigest | None = None,
        keep_partial: bool = False,
    ) -> ChunkSession:
        """Prepare to append a body at ``offset`` (tus PATCH, the IETF draft's appends).

        ``offset`` must be the upload's offset (else OffsetMismatch, nothing
        changed). ``length`` is the body's Content-Length when sent (None: read
        until the body ends); an empty body is accepted and changes nothing but
        the expiry. The body may not run past the upload's length, nor, while
        the length is not declared yet, past ``max_bytes``. Appending before
        the length is declared is refused (code ``length_unknown``) unless
        ``length_unknown_ok``. ``chunk_digest`` as in ``start_chunk()``.
        ``keep_partial``: a body that ends before ``length`` bytes (a broken
        connection) is recorded as far as it came, instead of refused.
        """
        check_algorithms(chunk_digest, ())
        began = time.monotonic()  # the observer's chunk duration counts the lock in
        if offset < 0 or (length is not None and length < 0):
            raise exc.BadContentRange("An offset or a length cannot be negative.")
        token, upload = self.context.lock(owner, upload_id)
        try:
            require_uploading(upload)
            if upload.extra.get(CONCAT_PARTS):
                raise exc.ConcatenationFinal(status=upload.status)
            if not upload.length_known and not length_unknown_ok:
                raise exc.BadContentRange(
                    "This upload's length is not declared yet.", code="length_unknown"
                )
            if offset != upload.offset:
                raise exc.OffsetMismatch(upload.offset, offset)
            end = upload.size if upload.length_known else max_bytes
            room = None if end is None else end - offset
            if room is not None and length is not None and length > room:
                if upload.length_known:
                    raise exc.LengthMismatch(
                        room,
                        length,
                        f"The body has {length} bytes; the upload has {room} bytes left "
                        f"of its {upload.size}.",
                    )
                raise exc.TooLarge(offset + length, max_bytes)
            byte_range = ByteRange(offset, offset + length - 1, end or 0) if length else None
            if keep_partial and length is not None:
                byte_range, room = None, length  # at most what was announced, maybe less
            session = ChunkSession(
                self.context,
                upload,
                token=token,
                byte_range=byte_range,
                max_bytes=room,
                chunk_digest=chunk_digest,
            )
            session.allow_empty = True
            session.began = began
            return session
        except BaseException:
            self.context.store.release(upload_id, token)
            raise
