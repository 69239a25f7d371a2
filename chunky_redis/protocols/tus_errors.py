"""How the tus dialect answers: each core error's status and headers, and empty answers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.http import HttpResponse

from ..core import errors as exc
from . import tus_headers as th
from .base import json_error

# How tus answers each of the core's errors; any other is a 400.
STATUSES: dict[type[exc.ChunkyError], int] = {
    exc.UploadNotFound: HTTPStatus.NOT_FOUND,
    exc.UploadExpired: HTTPStatus.GONE,
    exc.ChunkFileMissing: HTTPStatus.GONE,
    exc.UploadFailed: HTTPStatus.GONE,
    exc.OffsetMismatch: HTTPStatus.CONFLICT,
    exc.UploadLocked: HTTPStatus.LOCKED,  # tus clients retry a 423 (and a 409) after a HEAD
    exc.AlreadyComplete: HTTPStatus.FORBIDDEN,
    exc.TooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    exc.QuotaExceeded: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    exc.TooManyUploads: HTTPStatus.TOO_MANY_REQUESTS,
    exc.ChunkChecksumMismatch: 460,  # tus checksum extension: "Checksum Mismatch"
    exc.StoreUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
    exc.StorageError: HTTPStatus.SERVICE_UNAVAILABLE,
    exc.QueueUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
}


def status_for(error: exc.ChunkyError) -> int:
    for klass in type(error).__mro__:
        own = vars(klass).get("status_code")  # HTTP refusals and a host's own errors
        if isinstance(own, int):
            return own
        if klass in STATUSES:
            return STATUSES[klass]
    return HTTPStatus.BAD_REQUEST


def error_response(error: exc.ChunkyError) -> HttpResponse:
    """``{"detail", "code", ...facts}`` with tus's status and headers."""
    status = status_for(error)
    headers = dict(error.headers()) if hasattr(error, "headers") else {}
    if isinstance(error, exc.OffsetMismatch):
        headers[th.UPLOAD_OFFSET] = str(error.expected)
    if status in (HTTPStatus.LOCKED, HTTPStatus.SERVICE_UNAVAILABLE):
        headers["Retry-After"] = "1"
    body: dict[str, Any] = {"detail": error.detail, "code": error.code, **error.extra}
    return json_error(error, status=status, body=body, headers=headers)


def no_content(
    status: int = HTTPStatus.NO_CONTENT, headers: dict[str, str] | None = None
) -> HttpResponse:
    response = HttpResponse(status=status)
    del response["Content-Type"]
    if status != HTTPStatus.NO_CONTENT:  # a 204 may not carry it; without it, a chunked answer
        response["Content-Length"] = "0"
    return th.with_headers(response, headers or {})
