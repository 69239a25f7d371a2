"""What the IETF dialect reads from a request and from an upload, beyond the draft's fields."""

from __future__ import annotations

import base64
import binascii

from django.http import HttpRequest

from ..core.checksums import ResumableHash
from ..core.http import clean_filename
from ..core.store import Upload
from ..core.uploads import UploadService
from .bodies import BadBody


def content_length(request: HttpRequest) -> int:
    raw = request.META.get("CONTENT_LENGTH") or "0"
    if not raw.isdigit():
        raise BadBody("Content-Length is not a non-negative number.")
    return int(raw)


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


def our_checksum(service: UploadService, upload: Upload) -> str:
    """The upload's digest in the service's algorithm, from the streaming state.

    The draft's client sends no md5 at completion: the server's own digest stands in
    for it, so the core's completion (and post-processing's check) run as for any
    dialect. Only where incremental hashing is unavailable is the file read.
    """
    if upload.hash_state:
        return ResumableHash(upload.algorithm, upload.hash_state).hexdigest()
    return service.storage.digest(upload.upload_id, upload.algorithm, upload.offset)
