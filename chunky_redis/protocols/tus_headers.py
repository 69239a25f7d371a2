"""The tus 1.0 headers: their names, how to read them, how to write them. No view here.

Each parser raises a ChunkyError that the tus view answers with its status (tus.py).
"""

from __future__ import annotations

import base64
import binascii
import re
from http import HTTPStatus
from typing import TypeVar
from urllib.parse import urlsplit

from django.http import HttpResponse
from django.utils.http import http_date

from ..core import errors as exc
from ..core.checksums import ALGORITHMS, ChunkDigest
from ..core.http import is_upload_id
from .errors import HttpError

VERSION = "1.0.0"
OFFSET_CONTENT_TYPE = "application/offset+octet-stream"
# Advertised in Tus-Extension: only what this module implements.
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "expiration",
    "checksum",
    "termination",
    "concatenation",
    "concatenation-unfinished",
)
# sha1 first: the checksum extension requires it.
CHECKSUM_ALGORITHMS = ("sha1", "md5", "sha256", "sha512")
assert set(CHECKSUM_ALGORITHMS) <= set(ALGORITHMS)

TUS_RESUMABLE = "Tus-Resumable"
TUS_VERSION = "Tus-Version"
TUS_EXTENSION = "Tus-Extension"
TUS_MAX_SIZE = "Tus-Max-Size"
TUS_CHECKSUM_ALGORITHM = "Tus-Checksum-Algorithm"
UPLOAD_OFFSET = "Upload-Offset"
UPLOAD_LENGTH = "Upload-Length"
UPLOAD_DEFER_LENGTH = "Upload-Defer-Length"
UPLOAD_METADATA = "Upload-Metadata"
UPLOAD_EXPIRES = "Upload-Expires"
UPLOAD_CHECKSUM = "Upload-Checksum"
UPLOAD_CONCAT = "Upload-Concat"
METHOD_OVERRIDE = "X-HTTP-Method-Override"

# What a browser client on another origin must be allowed to send and to read (CORS).
REQUEST_HEADERS = (
    TUS_RESUMABLE,
    UPLOAD_OFFSET,
    UPLOAD_LENGTH,
    UPLOAD_DEFER_LENGTH,
    UPLOAD_METADATA,
    UPLOAD_CHECKSUM,
    UPLOAD_CONCAT,
    METHOD_OVERRIDE,
    "Content-Type",
)
EXPOSED_HEADERS = (
    "Location",
    TUS_RESUMABLE,
    TUS_VERSION,
    TUS_EXTENSION,
    TUS_MAX_SIZE,
    TUS_CHECKSUM_ALGORITHM,
    UPLOAD_OFFSET,
    UPLOAD_LENGTH,
    UPLOAD_DEFER_LENGTH,
    UPLOAD_METADATA,
    UPLOAD_EXPIRES,
    UPLOAD_CONCAT,
)

R = TypeVar("R", bound=HttpResponse)
_INTEGER_RE = re.compile(r"^[0-9]{1,19}$")
# A metadata key: ASCII, no space, no comma (tus 1.0, Upload-Metadata).
_KEY_RE = re.compile(r"^[\x21-\x2b\x2d-\x7e]+$")


class UnsupportedVersion(HttpError):
    status_code = HTTPStatus.PRECONDITION_FAILED
    default_detail = f"This server speaks tus {VERSION}: send Tus-Resumable: {VERSION}."
    default_code = "unsupported_version"

    def headers(self) -> dict[str, str]:
        return {TUS_VERSION: VERSION}


class WrongContentType(HttpError):
    status_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    default_detail = f"A body to append must be sent as Content-Type: {OFFSET_CONTENT_TYPE}."
    default_code = "unsupported_media_type"


class BadHeader(HttpError):
    default_code = "bad_header"

    def __init__(self, header: str, detail: str):
        super().__init__(f"{header}: {detail}", header=header)


def integer(value: str | None, header: str) -> int | None:
    """A non-negative integer header, None when absent; anything else is a BadHeader."""
    if value is None:
        return None
    if not _INTEGER_RE.match(value.strip()):
        raise BadHeader(header, f"must be a non-negative integer, got {value!r}.")
    return int(value)


def parse_metadata(value: str | None) -> dict[str, str]:
    """``key base64,key2 base64,key3`` as a dict; values decoded as UTF-8 (bytes kept as escapes)."""
    if value is None or not value.strip():
        return {}
    out: dict[str, str] = {}
    for pair in value.split(","):
        parts = pair.strip().split(" ")
        key = parts[0]
        if len(parts) > 2 or not _KEY_RE.match(key):
            raise BadHeader(UPLOAD_METADATA, f"{pair.strip()!r} is not 'key base64-value'.")
        if key in out:
            raise BadHeader(UPLOAD_METADATA, f"the key {key!r} appears twice.")
        out[key] = _decode(parts[1], key) if len(parts) == 2 else ""
    return out


def _decode(encoded: str, key: str) -> str:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadHeader(UPLOAD_METADATA, f"the value of {key!r} is not Base64.") from e
    return raw.decode("utf-8", "surrogateescape")


def format_metadata(metadata: dict[str, str]) -> str:
    pairs = []
    for key, value in metadata.items():
        if value == "":
            pairs.append(key)
        else:
            encoded = base64.b64encode(value.encode("utf-8", "surrogateescape")).decode()
            pairs.append(f"{key} {encoded}")
    return ",".join(pairs)


def parse_concat(value: str | None) -> tuple[str, list[str]]:
    """``partial`` -> ("partial", []); ``final;<url> <url>...`` -> ("final", the uploads' ids);
    no header -> ("", [])."""
    if value is None:
        return "", []
    value = value.strip()
    if value == "partial":
        return "partial", []
    if not value.startswith("final;"):
        raise BadHeader(UPLOAD_CONCAT, "must be 'partial' or 'final;<url> <url>...'.")
    ids = []
    for url in value[len("final;") :].split():
        upload_id = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
        if not is_upload_id(upload_id):
            raise BadHeader(UPLOAD_CONCAT, f"{url!r} is not an upload of this server.")
        ids.append(upload_id)
    if not ids:
        raise BadHeader(UPLOAD_CONCAT, "a final upload names its partial uploads.")
    return "final", ids


def parse_checksum(value: str | None) -> ChunkDigest | None:
    """``Upload-Checksum: <algorithm> <Base64 digest>``; an algorithm not offered is a 400."""
    if value is None:
        return None
    parts = value.strip().split(" ")
    if len(parts) != 2:
        raise BadHeader(UPLOAD_CHECKSUM, "must be '<algorithm> <Base64 digest>'.")
    algorithm = parts[0].lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise exc.UnsupportedDigest(algorithm, CHECKSUM_ALGORITHMS)
    try:
        expected = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadHeader(UPLOAD_CHECKSUM, "the digest is not Base64.") from e
    return ChunkDigest(algorithm, expected)


def expires(ms: int) -> str:
    """An expiry as an RFC 9110 HTTP-date (IMF-fixdate)."""
    return http_date(ms // 1000)


def with_headers(response: R, headers: dict[str, str]) -> R:
    for name, value in headers.items():
        response[name] = value
    return response
