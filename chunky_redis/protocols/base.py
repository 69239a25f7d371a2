"""What the dialects share: JSON bodies, draining a refused body, and the 500 of a bug."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any

from django.core.signals import got_request_exception
from django.http import HttpRequest, JsonResponse

from ..core import errors as exc
from ..core.http import CACHE_CONTROL
from ..core.session import ChunkSession
from ..core.store import Upload
from ..observe import refused
from .errors import ServerError

logger = logging.getLogger("chunky_redis")


def iso(ms: int) -> str | None:
    if not ms:
        return None
    stamp = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def upload_url(request: HttpRequest, upload_id: str) -> str:
    """The absolute URL of an upload below the view's mount point (the request's own, there)."""
    path = request.path
    if not path.rstrip("/").endswith(upload_id):
        path = path.rstrip("/") + f"/{upload_id}/"
    return request.build_absolute_uri(path)


def completion_data(upload: Upload, status_url: str) -> dict[str, Any]:
    """The body of a successful completion, the same in every dialect that answers with JSON."""
    return {
        "upload_id": upload.upload_id,
        "filename": upload.filename,
        "size": upload.size,
        "status": upload.status,
        "status_url": status_url,
    }


def json_response(data: dict[str, Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status)
    response[CACHE_CONTROL] = "no-store"
    # Without it, servers fall back to a chunked response (or, uWSGI, wait for a timeout).
    response["Content-Length"] = str(len(response.content))
    return response


# Most refusals happen before the body is read. gunicorn, like most servers, drains
# only a little of an unread body (64 KiB) and then resets the connection, and the
# client, still sending, may never see the answer. Reading the rest of a refused
# chunk keeps the answer deliverable and the keep-alive connection usable.
DRAIN_LIMIT = 64 << 20


def drain(request: HttpRequest, limit: int = DRAIN_LIMIT) -> None:
    """Read and discard what is left of the request body, up to ``limit`` bytes."""
    drained = 0
    try:
        while drained < limit:
            data = request.read(min(1 << 20, limit - drained))
            if not data:
                return
            drained += len(data)
    except Exception:  # a broken connection: there is nobody left to answer
        return


def json_error(
    error: exc.ChunkyError,
    *,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """A refusal as JSON; a dialect has chosen its status, body and headers."""
    refused(error)  # counted for the metrics, when they are on
    if status >= 500:
        # What went wrong on the server (a Redis host and port, a path) is for the
        # log, not for the client: it gets the class's generic message.
        cause = error.__cause__
        logger.warning(
            "chunky_redis: answered %d %s: %s%s",
            status,
            error.code,
            error.detail,
            f" (from {type(cause).__name__}: {cause})"
            if cause and str(cause) not in error.detail
            else "",
        )
        body["detail"] = type(error).default_detail
    response = json_response(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


# django-chunked-upload answers 404 for an unknown upload, 410 for an expired one and 400
# for every other refusal (403 comes with the HTTP errors); django-chunky-upload kept them.
# What neither has (a held lock, quotas, an unavailable store) has the status that says what it is.
DJANGO_UPLOAD_STATUSES: dict[type[exc.ChunkyError], int] = {
    exc.UploadNotFound: HTTPStatus.NOT_FOUND,
    exc.UploadExpired: HTTPStatus.GONE,
    exc.ChunkFileMissing: HTTPStatus.GONE,  # the bytes are gone: start a new upload
    exc.UploadLocked: HTTPStatus.CONFLICT,
    exc.TooManyUploads: HTTPStatus.TOO_MANY_REQUESTS,
    exc.QuotaExceeded: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    exc.StoreUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
    exc.StorageError: HTTPStatus.SERVICE_UNAVAILABLE,
    exc.QueueUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
}


def status_in(error: exc.ChunkyError, statuses: Mapping[type[exc.ChunkyError], int]) -> int:
    """The status of ``error`` in a dialect's table (the nearest class wins); 400 if none."""
    for klass in type(error).__mro__:
        # HTTP refusals, and a host app's own error classes, may carry their status.
        own = vars(klass).get("status_code")
        if isinstance(own, int):
            return own
        if klass in statuses:
            return statuses[klass]
    return HTTPStatus.BAD_REQUEST


def detail_response(error: exc.ChunkyError, status: int) -> JsonResponse:
    """``{"detail", "code", ...facts}``, as django-chunked-upload and django-chunky-upload answer.

    An offset mismatch adds ``offset``, django-chunked-upload's name for the server's offset.
    """
    body: dict[str, Any] = {"detail": error.detail, "code": error.code}
    if isinstance(error, exc.OffsetMismatch):
        body["offset"] = error.expected
    body.update(error.extra)
    headers = dict(error.headers()) if hasattr(error, "headers") else {}
    if status in (HTTPStatus.CONFLICT, HTTPStatus.SERVICE_UNAVAILABLE):
        headers["Retry-After"] = "1"
    return json_error(error, status=status, body=body, headers=headers)


def report_bug(request: HttpRequest, sender: type) -> ServerError:
    """A bug: log its traceback, tell error reporters; the dialect answers the error returned."""
    logger.exception("chunky_redis: %s %s failed", request.method, request.path)
    got_request_exception.send(sender=sender, request=request)  # error reporters listen here
    drain(request)
    return ServerError()


class aborting:
    """Abort the chunk session (release the lock, drop a new file) on any error."""

    def __init__(self, session: ChunkSession):
        self.session = session

    def __enter__(self) -> ChunkSession:
        return self.session

    def __exit__(self, exc_type: Any, exc_value: Any, tb: Any) -> None:
        if exc_type is not None:
            self.session.abort()
