"""What the IETF dialect reads from a request beyond the draft's fields: the body's length,
the upload's length as the request states it, a tus-style filename."""

from __future__ import annotations

import base64
import binascii

from django.http import HttpRequest

from ..core.http import clean_filename
from .bodies import BadBody
from .errors import LengthRequired
from .rufh_fields import InconsistentLength, sf_integer


class BodyCutShort(BadBody):
    """The body ended before its Content-Length; what came was kept (the offset says how much)."""

    default_code = "body_cut_short"

    def __init__(self, received: int, announced: int):
        super().__init__(
            f"The body ended after {received} of its {announced} bytes; they were kept: "
            "send the rest from the upload's offset.",
            received=received,
            announced=announced,
        )


def body_length_of(request: HttpRequest) -> int:
    """The body's Content-Length. A chunked body is refused (Django reads a body by its
    Content-Length), except an empty one where the server ends the input (gunicorn's
    ``wsgi.input_terminated``): node sends an empty body chunked."""
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        stream = request.META.get("wsgi.input")
        if request.META.get("wsgi.input_terminated") and stream and not stream.read(1):
            return 0
        raise LengthRequired()
    raw = request.META.get("CONTENT_LENGTH") or "0"
    if not raw.isdigit():
        raise BadBody("Content-Length is not a non-negative number.")
    return int(raw)


def declared_length(
    request: HttpRequest, *, offset: int, body_length: int, complete: bool
) -> int | None:
    """The upload's length as this request states it, or None; two statements must agree.

    Upload-Length says it; a request that completes the upload says it too (its offset
    plus its Content-Length).
    """
    declared = sf_integer(request.headers.get("Upload-Length"))
    implied = offset + body_length if complete else None
    if declared is not None and implied is not None and declared != implied:
        raise InconsistentLength(
            f"Upload-Length is {declared}, but this request completes the upload "
            f"at {implied} bytes."
        )
    return implied if declared is None else declared


def filename_from_metadata(value: str | None) -> str:
    """The ``filename`` of tus-style ``Upload-Metadata`` (tus-js-client sends it in its draft
    modes too): ``key base64value, ...``; '' when absent or unreadable."""
    for pair in (value or "").split(","):
        key, _, encoded = pair.strip().partition(" ")
        if key == "filename":
            try:
                return clean_filename(base64.b64decode(encoded, validate=True).decode())
            except (binascii.Error, UnicodeDecodeError):
                return ""
    return ""
