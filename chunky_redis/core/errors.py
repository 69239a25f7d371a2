"""What can go wrong with an upload, as facts: no HTTP status here.

Each error has a stable ``code`` and carries the facts a client needs (the
expected and the provided offset, the size and the limit...), as attributes and,
where every dialect shows them, in ``extra``. Each dialect (chunky_redis.protocols)
decides the status, the headers and the body: an offset mismatch is a 400 in the
chunky dialect and a 409 in tus and the IETF draft.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar


class ChunkyError(Exception):
    """The base of every refusal; a host app raises it from the view's hooks."""

    default_detail: str = "Bad request."
    default_code: str = "bad_request"

    def __init__(self, detail: str | None = None, code: str | None = None, **extra: Any):
        self.detail = detail or self.default_detail
        self.code = code or self.default_code
        self.extra = extra  # facts every dialect may show as they are
        super().__init__(self.detail)

    # The core knows no HTTP status. Code written when every error carried one may
    # still read ``status_code``: the chunky dialect installs its mapping for it.
    _legacy_status: ClassVar[Callable[[ChunkyError], int] | None] = None

    @property
    def status_code(self) -> int:
        """Deprecated: the status of this error in the chunky dialect (ask a dialect instead)."""
        if ChunkyError._legacy_status is None:
            raise AttributeError("status_code: the core's errors carry no HTTP status")
        return ChunkyError._legacy_status(self)


def install_legacy_status(status_for: Callable[[ChunkyError], int]) -> None:
    """Let ``ChunkyError.status_code`` answer with a dialect's status (for 0.x code)."""
    ChunkyError._legacy_status = status_for


class UploadNotFound(ChunkyError):
    # Also raised for another user's upload, so that ids cannot be probed.
    default_detail = "No such upload."
    default_code = "not_found"


class UploadExpired(ChunkyError):
    default_detail = "The upload has expired."
    default_code = "expired"


class MissingChunk(ChunkyError):
    default_detail = "The request carries no chunk."
    default_code = "missing_chunk"


class BadContentRange(ChunkyError):
    default_detail = "Missing or invalid Content-Range header."
    default_code = "bad_content_range"


class TotalChanged(BadContentRange):
    """A chunk declares another total than the upload's: the length never changes once set."""

    default_code = "total_changed"

    def __init__(self, declared: int, total: int):
        self.declared, self.total = declared, total
        super().__init__(
            f"Content-Range TOTAL is {declared}, but this upload was declared "
            f"with {total} bytes; the total cannot change."
        )


class TooLarge(ChunkyError):
    default_detail = "The file exceeds the size limit."
    default_code = "too_large"

    def __init__(self, size: int | None, limit: int | None):
        """``size``: the declared size, or None when the bytes ran past ``limit``."""
        self.size, self.limit = size, limit
        super().__init__(
            f"The file has {size} bytes; the limit is {limit}." if size is not None else None
        )


class TooManyUploads(ChunkyError):
    # A quota, not a rate limit: the count drops when an upload completes or expires.
    default_detail = "Too many uploads in progress."
    default_code = "too_many_uploads"


class QuotaExceeded(ChunkyError):
    default_detail = "The upload would pass the limit of bytes in progress."
    default_code = "quota_exceeded"


class OffsetMismatch(ChunkyError):
    default_detail = "The chunk does not start at the upload's offset."
    default_code = "offset_mismatch"

    def __init__(self, expected: int, provided: int, detail: str | None = None):
        self.expected, self.provided = expected, provided
        super().__init__(
            detail or f"The chunk starts at byte {provided}, the upload is at byte {expected}.",
            expected_offset=expected,
            provided_offset=provided,
        )


class LengthMismatch(ChunkyError):
    """The body does not carry the bytes its request announced (``received`` None: more)."""

    default_detail = "The chunk's length does not match its Content-Range."
    default_code = "length_mismatch"

    def __init__(self, announced: int, received: int | None, detail: str):
        self.announced, self.received = announced, received
        super().__init__(detail)


class ChecksumMismatch(ChunkyError):
    default_detail = "The checksum does not match the uploaded bytes."
    default_code = "checksum_mismatch"

    def __init__(self, algorithm: str, detail: str | None = None):
        self.algorithm = algorithm
        super().__init__(detail or f"The {algorithm} of the received bytes does not match.")


class InvalidChecksum(ChecksumMismatch):
    """The client's checksum is not a hex digest at all (so it cannot match)."""

    default_code = "bad_checksum"

    def __init__(self, algorithm: str):
        super().__init__(algorithm, f"The {algorithm} must be hexadecimal.")


class MissingChecksum(ChunkyError):
    default_detail = "Completion needs the file's checksum."
    default_code = "missing_checksum"


class UploadIncomplete(ChunkyError):
    default_detail = "Not every byte of the upload has been received."
    default_code = "incomplete"

    def __init__(self, offset: int, size: int):
        self.offset, self.size = offset, size
        super().__init__(f"{offset} of {size} bytes have been received.", offset=offset, size=size)


class AlreadyComplete(ChunkyError):
    default_detail = "The upload is already complete."
    default_code = "already_complete"

    def __init__(self, status: str | None = None):
        self.status = status
        super().__init__(**({"status": status} if status else {}))


class UploadFailed(ChunkyError):
    """Post-processing failed the upload; it takes no more bytes."""

    default_code = "upload_failed"

    def __init__(self, reason: str, status: str):
        self.reason, self.status = reason, status
        super().__init__(f"The upload failed: {reason}", status=status)


class UploadLocked(ChunkyError):
    default_detail = "Another request is writing to this upload; retry shortly."
    default_code = "locked"


class LockLost(UploadLocked):
    default_detail = "The upload's lock was lost while writing; the chunk was not recorded."
    default_code = "lock_lost"


class StoreUnavailable(ChunkyError):
    """Redis could not be reached; raised from the client library's errors."""

    default_detail = "The upload state store is unavailable; retry later."
    default_code = "store_unavailable"


class ChunkFileMissing(ChunkyError):
    """The bytes an upload has received are gone from the chunk storage.

    Nothing is recorded; the upload cannot go on (start a new one).
    """

    default_detail = "The bytes received so far are missing from the server; start a new upload."
    default_code = "upload_lost"


class StorageError(ChunkyError):
    """The chunk storage could not be written."""

    default_detail = "The upload storage is unavailable; retry later."
    default_code = "storage_unavailable"


class QueueUnavailable(ChunkyError):
    default_detail = "Post-processing could not be queued; send the completion again."
    default_code = "queue_unavailable"


class ChunkChecksumMismatch(ChunkyError):
    """The digest a request announced for its own body does not match the bytes that arrived.

    The chunk is not recorded: the offset and the digest states stay where they were,
    and the next chunk at that offset overwrites what was written.
    """

    default_code = "chunk_checksum_mismatch"

    def __init__(self, algorithm: str, expected: bytes, computed: bytes):
        self.algorithm, self.expected, self.computed = algorithm, expected, computed
        super().__init__(
            f"The {algorithm} of this request's body is {computed.hex()}, "
            f"not {expected.hex()} as announced; the chunk was discarded.",
            algorithm=algorithm,
            expected=expected.hex(),
            computed=computed.hex(),
        )


class ConcatenationFinal(AlreadyComplete):
    """A concatenation receives no bytes of its own: they come from its parts."""

    default_detail = "This upload is a concatenation: it receives no bytes of its own."
    default_code = "concatenation_final"


class BadConcatenation(ChunkyError):
    """A concatenation that cannot be made (no part)."""

    default_detail = "These uploads cannot be concatenated."
    default_code = "bad_concatenation"


class UnsupportedDigest(ChunkyError):
    """A digest algorithm the server does not compute."""

    default_code = "unsupported_digest"

    def __init__(self, algorithm: str, supported: tuple[str, ...]):
        self.algorithm, self.supported = algorithm, supported
        super().__init__(
            f"The digest algorithm {algorithm!r} is not supported; use one of "
            f"{', '.join(supported)}.",
            algorithm=algorithm,
            supported=list(supported),
        )
