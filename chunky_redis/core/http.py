"""Small, pure HTTP parsing helpers. No Django here."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from email.message import Message
from urllib.parse import unquote

from .errors import BadContentRange

CONTENT_RANGE = "Content-Range"
CONTENT_DISPOSITION = "Content-Disposition"
CACHE_CONTROL = "Cache-Control"

UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")

# RFC 9110 section 14.4: Content-Range = range-unit SP ( range-resp / unsatisfied-range ).
# Only a complete "first-last/length" is meaningful for an upload chunk.
_CONTENT_RANGE_RE = re.compile(r"^bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19})$")


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in the header
    total: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_content_range(value: str) -> ByteRange:
    """Parse ``bytes START-END/TOTAL``; raise BadContentRange on anything else."""
    match = _CONTENT_RANGE_RE.match(value.strip())
    if not match:
        raise BadContentRange(
            f"Content-Range must look like 'bytes START-END/TOTAL', got {value!r}."
        )
    start, end, total = (int(g) for g in match.groups())
    if end < start:
        raise BadContentRange("Content-Range END is before START.")
    if end >= total:
        raise BadContentRange("Content-Range END must be smaller than TOTAL.")
    return ByteRange(start, end, total)


_EXT_FILENAME_RE = re.compile(
    r"(?:^|;)\s*filename\*\s*=\s*([^';\s]*)'[^']*'([^;\s]*)", re.IGNORECASE
)


# The header most clients send with every chunk (jQuery-File-Upload, the benchmark): one quoted
# name of plain ASCII. It is read by this pattern alone; anything else goes to the full parser,
# which gives the same name for what the pattern takes (tests/test_http.py checks).
_PLAIN_FILENAME_RE = re.compile(r"[A-Za-z-]+; ?filename=\"([\w .()\[\]+,!#$&'@^~{}-]*)\"", re.ASCII)


def filename_from_content_disposition(value: str) -> str:
    """The filename parameter of a Content-Disposition header, or ''.

    RFC 6266 section 4.3: when both are sent, ``filename*=UTF-8''...`` wins
    over the plain ``filename=`` (which is often an ASCII fallback).
    """
    if not value:
        return ""
    plain = _PLAIN_FILENAME_RE.fullmatch(value)
    if plain:
        return clean_filename(plain.group(1))
    return parsed_filename(value)


def parsed_filename(value: str) -> str:
    """``filename_from_content_disposition`` by the full parser (RFC 2231 and 6266 forms)."""
    match = _EXT_FILENAME_RE.search(value)
    if match:
        charset, encoded = match.group(1) or "utf-8", match.group(2)
        try:
            return clean_filename(unquote(encoded, encoding=charset, errors="strict"))
        except (LookupError, UnicodeDecodeError):
            pass  # a broken extended value: fall back to the plain one
    msg = Message()
    msg["content-disposition"] = value
    return clean_filename(msg.get_filename() or "")


# Filesystems limit a name to 255 bytes, not characters: "é" takes two in UTF-8.
MAX_FILENAME_BYTES = 255
_MAX_EXTENSION_BYTES = 24


def fit_bytes(filename: str, limit: int = MAX_FILENAME_BYTES) -> str:
    """``filename`` cut to ``limit`` UTF-8 bytes at a character boundary, keeping its extension."""
    encoded = filename.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return filename
    stem, ext = os.path.splitext(filename)
    if len(ext.encode("utf-8", "surrogatepass")) > _MAX_EXTENSION_BYTES:
        stem, ext = filename, ""
    room = limit - len(ext.encode("utf-8", "surrogatepass"))
    return stem.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore") + ext


def clean_filename(name: str) -> str:
    """Keep the last path component, drop control characters, cut to 255 UTF-8 bytes.

    The client's name is only ever metadata: files on disk are named after the upload id.
    """
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = fit_bytes("".join(ch for ch in name if ch.isprintable()).strip())
    return "" if name in (".", "..") else name


def is_upload_id(value: str) -> bool:
    return bool(UPLOAD_ID_RE.match(value))
