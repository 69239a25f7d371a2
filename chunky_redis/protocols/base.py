"""What the dialects share: JSON bodies, draining a refused body, and the 500 of a bug."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from django.core.signals import got_request_exception
from django.http import HttpRequest, JsonResponse

from ..core import errors as exc
from ..core.http import CACHE_CONTROL
from ..core.session import ChunkSession
from ..observe import refused
from .errors import ServerError

logger = logging.getLogger("chunky_redis")


def iso(ms: int) -> str | None:
    if not ms:
        return None
    stamp = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
