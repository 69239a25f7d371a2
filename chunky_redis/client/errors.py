"""What can go wrong in an upload, as exceptions that carry the server's answer."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """The upload could not be done (a bad argument, an unusable file, a refusal)."""


class ServerError(ClientError):
    """The server refused: ``status_code`` and its JSON body ``{"detail", "code", ...}``."""

    def __init__(self, status_code: int, body: dict[str, Any], url: str = ""):
        self.status_code = status_code
        self.body = body
        self.code = str(body.get("code", ""))
        self.detail = str(body.get("detail", "")) or f"HTTP {status_code}"
        self.url = url
        super().__init__(
            f"{self.detail} (HTTP {status_code}{', ' + self.code if self.code else ''})"
        )


class TransientError(ClientError):
    """Worth retrying: the connection broke, the server was busy or briefly unavailable.

    ``retry_after`` is the server's Retry-After in seconds, when it sent one.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, cause: BaseException | None = None
    ):
        super().__init__(message)
        self.retry_after = retry_after
        self.cause = cause


class UploadFailed(ClientError):
    """The server's post-processing failed; ``status`` is its last status answer."""

    def __init__(self, status: dict[str, Any]):
        self.status = status
        reason = status.get("reason") or status.get("detail") or "no reason given"
        super().__init__(
            f"upload {status.get('upload_id', '?')} {status.get('status', 'failed')}: {reason}"
        )
