"""Exceptions that carry their HTTP meaning.

Every error a client can cause is one of these. The view layer renders any of
them as ``{"detail": ..., "code": ..., **extra}`` with ``status_code``; nothing
a client sends should ever surface as a 500.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class ChunkyError(Exception):
    status_code: int = HTTPStatus.BAD_REQUEST
    default_detail: str = "Bad request."
    default_code: str = "bad_request"

    def __init__(self, detail: str | None = None, code: str | None = None, **extra: Any):
        self.detail = detail or self.default_detail
        self.code = code or self.default_code
        self.extra = extra
        super().__init__(self.detail)

    def as_dict(self) -> dict[str, Any]:
        return {"detail": self.detail, "code": self.code, **self.extra}

    def headers(self) -> dict[str, str]:
        """Response headers that go with the error."""
        if self.status_code in (HTTPStatus.CONFLICT, HTTPStatus.SERVICE_UNAVAILABLE):
            return {"Retry-After": "1"}
        return {}


class NotAuthenticated(ChunkyError):
    status_code = HTTPStatus.FORBIDDEN
    default_detail = "Authentication credentials were not provided."
    default_code = "not_authenticated"


class PermissionDenied(ChunkyError):
    status_code = HTTPStatus.FORBIDDEN
    default_detail = "You do not have permission to perform this action."
    default_code = "permission_denied"


class UploadNotFound(ChunkyError):
    # Also used for another user's upload, so that ids cannot be probed.
    status_code = HTTPStatus.NOT_FOUND
    default_detail = "No such upload."
    default_code = "not_found"


class UploadExpired(ChunkyError):
    status_code = HTTPStatus.GONE
    default_detail = "The upload has expired."
    default_code = "expired"


class MissingChunk(ChunkyError):
    default_detail = "The request carries no chunk."
    default_code = "missing_chunk"


class BadContentRange(ChunkyError):
    default_detail = "Missing or invalid Content-Range header."
    default_code = "bad_content_range"


class TooLarge(ChunkyError):
    default_detail = "The file exceeds the size limit."
    default_code = "too_large"


class TooManyUploads(ChunkyError):
    # A quota, not a rate limit: the count drops when an upload completes or expires.
    status_code = HTTPStatus.TOO_MANY_REQUESTS
    default_detail = "Too many uploads in progress."
    default_code = "too_many_uploads"


class QuotaExceeded(ChunkyError):
    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    default_detail = "The upload would pass the limit of bytes in progress."
    default_code = "quota_exceeded"


class LengthRequired(ChunkyError):
    # Django reads a body by its Content-Length; a chunked one would arrive empty.
    status_code = HTTPStatus.LENGTH_REQUIRED
    default_detail = (
        "Send the chunk with a Content-Length (Transfer-Encoding: chunked is not accepted)."
    )
    default_code = "length_required"


class OffsetMismatch(ChunkyError):
    default_detail = "The chunk does not start at the upload's offset."
    default_code = "offset_mismatch"

    def __init__(self, offset: int, provided: int, detail: str | None = None):
        super().__init__(
            detail or f"The chunk starts at byte {provided}, the upload is at byte {offset}.",
            offset=offset,
            expected_offset=offset,
            provided_offset=provided,
        )


class LengthMismatch(ChunkyError):
    default_detail = "The chunk's length does not match its Content-Range."
    default_code = "length_mismatch"


class ChecksumMismatch(ChunkyError):
    default_detail = "The checksum does not match the uploaded bytes."
    default_code = "checksum_mismatch"


class MissingChecksum(ChunkyError):
    default_detail = "Completion needs the file's checksum."
    default_code = "missing_checksum"


class UploadIncomplete(ChunkyError):
    default_detail = "Not every byte of the upload has been received."
    default_code = "incomplete"


class AlreadyComplete(ChunkyError):
    default_detail = "The upload is already complete."
    default_code = "already_complete"


class UploadLocked(ChunkyError):
    status_code = HTTPStatus.CONFLICT
    default_detail = "Another request is writing to this upload; retry shortly."
    default_code = "locked"


class LockLost(UploadLocked):
    default_detail = "The upload's lock was lost while writing; the chunk was not recorded."
    default_code = "lock_lost"


class MethodNotAllowed(ChunkyError):
    status_code = HTTPStatus.METHOD_NOT_ALLOWED
    default_detail = "Method not allowed."
    default_code = "method_not_allowed"

    def __init__(self, detail: str | None = None, *, allow: list[str]):
        super().__init__(detail, allowed=allow)

    def headers(self) -> dict[str, str]:
        # RFC 9110 section 15.5.6: a 405 MUST list the methods the resource supports.
        return {"Allow": ", ".join(self.extra["allowed"])}


class ServerError(ChunkyError):
    """A bug, not the client's doing: answered as JSON, logged with its traceback."""

    status_code = HTTPStatus.INTERNAL_SERVER_ERROR
    default_detail = "The server failed to handle the request; it has been logged."
    default_code = "server_error"


class StoreUnavailable(ChunkyError):
    """Redis could not be reached; raised from the client library's errors."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    default_detail = "The upload state store is unavailable; retry later."
    default_code = "store_unavailable"


class ChunkFileMissing(ChunkyError):
    """The bytes an upload has received are gone from the upload directory.

    Nothing is recorded; the upload cannot go on (410: start a new one).
    """

    status_code = HTTPStatus.GONE
    default_detail = "The bytes received so far are missing from the server; start a new upload."
    default_code = "upload_lost"


class StorageError(ChunkyError):
    """The chunk directory could not be written."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    default_detail = "The upload storage is unavailable; retry later."
    default_code = "storage_unavailable"


class QueueUnavailable(ChunkyError):
    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    default_detail = "Post-processing could not be queued; send the completion again."
    default_code = "queue_unavailable"
