"""Refusals that only exist over HTTP: they carry their own status.

The core's errors (chunky_redis.core.errors) carry facts; each dialect maps
them to a status. These come from the HTTP layer itself (authentication, CSRF,
methods, framing), so they mean the same in every dialect.
"""

from __future__ import annotations

from http import HTTPStatus

from ..core.errors import ChunkyError


class HttpError(ChunkyError):
    status_code = HTTPStatus.BAD_REQUEST  # (shadows the core's deprecated property)

    def headers(self) -> dict[str, str]:
        """Response headers that go with the error."""
        return {}


class NotAuthenticated(HttpError):
    status_code = HTTPStatus.FORBIDDEN
    default_detail = "Authentication credentials were not provided."
    default_code = "not_authenticated"


class PermissionDenied(HttpError):
    status_code = HTTPStatus.FORBIDDEN
    default_detail = "You do not have permission to perform this action."
    default_code = "permission_denied"


class LengthRequired(HttpError):
    # Django reads a body by its Content-Length; a chunked one would arrive empty.
    status_code = HTTPStatus.LENGTH_REQUIRED
    default_detail = (
        "Send the chunk with a Content-Length (Transfer-Encoding: chunked is not accepted)."
    )
    default_code = "length_required"


class MethodNotAllowed(HttpError):
    status_code = HTTPStatus.METHOD_NOT_ALLOWED
    default_detail = "Method not allowed."
    default_code = "method_not_allowed"

    def __init__(self, detail: str | None = None, *, allow: list[str]):
        super().__init__(detail, allowed=allow)

    def headers(self) -> dict[str, str]:
        # RFC 9110 section 15.5.6: a 405 MUST list the methods the resource supports.
        return {"Allow": ", ".join(self.extra["allowed"])}


class ServerError(HttpError):
    """A bug, not the client's doing: answered as JSON, logged with its traceback."""

    status_code = HTTPStatus.INTERNAL_SERVER_ERROR
    default_detail = "The server failed to handle the request; it has been logged."
    default_code = "server_error"
