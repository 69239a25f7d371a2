"""The header fields of the IETF resumable-upload draft, by interop version.

draft-ietf-httpbis-resumable-upload names its iterations by an interop version
(the ``Upload-Draft-Interop-Version`` request field). What changes between the
versions this server accepts, 3 to 8:

- 3 says ``Upload-Incomplete`` (true while more is to come); 4 and later say
  ``Upload-Complete`` (true when the request ends the upload);
- 6 and later require ``Content-Type: application/partial-upload`` on an append;
- 6 calls the lifetime limit ``expires``, 7 and later ``max-age``;
- up to 6 an append that does not end the upload answers 201, from 7 on 204.

Values are Structured Fields (RFC 9651): an Integer or a Boolean item; a value
that does not parse is treated as absent, as the draft says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

from django.http import HttpRequest

from .errors import HttpError

VERSION_HEADER = "Upload-Draft-Interop-Version"
OLDEST, LATEST = 3, 8
PARTIAL_UPLOAD = "application/partial-upload"
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types#"

# For a browser client's CORS configuration (django-cors-headers' CORS_ALLOW_HEADERS and
# CORS_EXPOSE_HEADERS): what the dialect reads, and what it answers that a script must see.
REQUEST_HEADERS = (
    VERSION_HEADER,
    "Upload-Complete",
    "Upload-Incomplete",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Metadata",
    "Content-Digest",
    "Repr-Digest",
    "Want-Repr-Digest",
    "Content-Disposition",
)
RESPONSE_HEADERS = (
    "Location",
    "Upload-Complete",
    "Upload-Incomplete",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Limit",
    "Repr-Digest",
    VERSION_HEADER,
)

_SF_INTEGER = re.compile(r"^-?[0-9]{1,15}$")


class UnsupportedVersion(HttpError):
    default_detail = f"Upload-Draft-Interop-Version must be one of {OLDEST} to {LATEST}."
    default_code = "unsupported_interop_version"


class MissingUploadComplete(HttpError):
    default_detail = "The request needs an Upload-Complete header (?0 or ?1)."
    default_code = "missing_upload_complete"


class MissingUploadOffset(HttpError):
    default_detail = "An append needs an Upload-Offset header (a non-negative integer)."
    default_code = "missing_upload_offset"


class UnsupportedMediaType(HttpError):
    status_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    default_detail = f"An append's Content-Type must be {PARTIAL_UPLOAD}."
    default_code = "unsupported_media_type"


class InconsistentLength(HttpError):
    """Two indications of the upload's length disagree, or a body runs past it."""

    default_detail = "The request's length values are inconsistent."
    default_code = "inconsistent_length"


def sf_integer(value: str | None) -> int | None:
    """A non-negative Structured Field Integer, or None (absent or not one)."""
    if value is None:
        return None
    value = value.strip(" ")
    if not _SF_INTEGER.match(value):
        return None
    number = int(value)
    return number if number >= 0 else None


def sf_boolean(value: str | None) -> bool | None:
    if value is None:
        return None
    return {"?1": True, "?0": False}.get(value.strip(" "))


@dataclass(frozen=True)
class Dialect:
    """What one interop version calls things."""

    version: int

    @property
    def incomplete_header(self) -> bool:
        return self.version == 3

    @property
    def requires_partial_upload(self) -> bool:
        return self.version >= 6

    @property
    def append_status(self) -> int:
        return 201 if self.version <= 6 else 204

    @property
    def age_key(self) -> str:
        return "expires" if self.version <= 6 else "max-age"

    def upload_complete(self, request: HttpRequest) -> bool | None:
        """Whether the request ends the upload; None when it does not say."""
        if self.incomplete_header:
            incomplete = sf_boolean(request.headers.get("Upload-Incomplete"))
            # Version 3: an absent Upload-Incomplete means the request ends the upload.
            return True if incomplete is None else not incomplete
        return sf_boolean(request.headers.get("Upload-Complete"))

    def complete_headers(self, complete: bool) -> dict[str, str]:
        if self.incomplete_header:
            return {"Upload-Incomplete": "?0" if complete else "?1"}
        return {"Upload-Complete": "?1" if complete else "?0"}

    def limit(self, *, max_size: int | None, max_age_s: int | None) -> str:
        """The Upload-Limit dictionary; ``min-size=0`` when there is no limit at all."""
        members = []
        if max_size is not None:
            members.append(f"max-size={max_size}")
        if max_age_s is not None:
            members.append(f"{self.age_key}={max(max_age_s, 0)}")
        return ", ".join(members) or "min-size=0"


def dialect_for(request: HttpRequest) -> Dialect:
    """The request's interop version; a request without one is taken as the latest."""
    raw = request.headers.get(VERSION_HEADER)
    if raw is None:
        return Dialect(LATEST)
    version = sf_integer(raw)
    if version is None or not OLDEST <= version <= LATEST:
        raise UnsupportedVersion(
            f"Upload-Draft-Interop-Version {raw.strip()!r} is not supported; "
            f"send one of {OLDEST} to {LATEST}.",
            supported=list(range(OLDEST, LATEST + 1)),
        )
    return Dialect(version)
