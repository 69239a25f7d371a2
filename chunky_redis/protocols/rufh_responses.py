"""Responses of the IETF resumable-upload dialect: the draft's headers and RFC 9457 problems."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.http import HttpResponse, JsonResponse

from ..core import errors as exc
from ..core.http import CACHE_CONTROL
from .base import json_error, status_in
from .rufh_fields import (
    PROBLEM_JSON,
    PROBLEM_TYPES,
    VERSION_HEADER,
    Dialect,
    InconsistentLength,
)

# How this dialect answers each of the core's errors; any other is a 400.
STATUSES: dict[type[exc.ChunkyError], HTTPStatus] = {
    exc.UploadNotFound: HTTPStatus.NOT_FOUND,
    exc.UploadExpired: HTTPStatus.GONE,
    exc.ChunkFileMissing: HTTPStatus.GONE,
    exc.OffsetMismatch: HTTPStatus.CONFLICT,
    exc.UploadLocked: HTTPStatus.LOCKED,  # tus-js-client retries a 423
    exc.TooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    exc.QuotaExceeded: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    exc.TooManyUploads: HTTPStatus.TOO_MANY_REQUESTS,
    exc.StoreUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
    exc.StorageError: HTTPStatus.SERVICE_UNAVAILABLE,
    exc.QueueUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
}

# Errors that say two length indications disagree: the draft's inconsistent-upload-length.
LENGTH_ERRORS = (InconsistentLength, exc.TotalChanged, exc.LengthMismatch)


def status_for(error: exc.ChunkyError, dialect: Dialect) -> int:
    if isinstance(error, exc.UploadExpired) and dialect.version <= 6:
        return HTTPStatus.NOT_FOUND  # versions 3-6: an inactive upload MUST answer 404
    return status_in(error, STATUSES)


def problem_body(error: exc.ChunkyError, status: int) -> dict[str, Any]:
    """RFC 9457 members, the draft's problem types where one applies, and the error's code."""
    body: dict[str, Any] = {}
    if isinstance(error, exc.OffsetMismatch):
        body["type"] = PROBLEM_TYPES + "mismatching-upload-offset"
    elif isinstance(error, LENGTH_ERRORS):
        body["type"] = PROBLEM_TYPES + "inconsistent-upload-length"
    elif isinstance(error, exc.AlreadyComplete):
        body["type"] = PROBLEM_TYPES + "completed-upload"
    body.update(title=HTTPStatus(status).phrase, detail=error.detail, code=error.code)
    if isinstance(error, exc.OffsetMismatch):
        body["expected-offset"], body["provided-offset"] = error.expected, error.provided
    else:
        body.update(error.extra)
    return body


def problem_response(
    error: exc.ChunkyError, dialect: Dialect, headers: dict[str, str]
) -> JsonResponse:
    status = status_for(error, dialect)
    # Only an answer from processing the whole upload says it is complete.
    headers = {**headers, **dialect.complete_headers(getattr(error, "completes", False))}
    if isinstance(error, exc.OffsetMismatch):
        headers["Upload-Offset"] = str(error.expected)  # MUST: the correct offset
    if hasattr(error, "headers"):
        headers.update(error.headers())
    if status in (HTTPStatus.LOCKED, HTTPStatus.SERVICE_UNAVAILABLE):
        headers["Retry-After"] = "1"
    response = json_error(error, status=status, body=problem_body(error, status), headers=headers)
    response["Content-Type"] = PROBLEM_JSON
    return response


def empty_response(status: int, dialect: Dialect, headers: dict[str, str]) -> HttpResponse:
    response = HttpResponse(status=status)
    del response["Content-Type"]  # no content
    for name, value in headers.items():
        response[name] = value
    response[VERSION_HEADER] = str(dialect.version)
    response[CACHE_CONTROL] = "no-store"
    if status != 204:
        response["Content-Length"] = "0"  # else servers send an empty body chunked
    return response
