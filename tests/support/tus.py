"""Small helpers to speak tus 1.0 through the test Api (Django's test client or a socket)."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlsplit

from tests.support.api import Api, Reply

V = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"
BASE = "/files/"


def path_of(reply: Reply) -> str:
    """The upload's path from a creation's Location."""
    assert reply.status == 201, (reply.status, reply.body)
    return urlsplit(reply.headers["location"]).path


def create(api: Api, length: int | None, body: bytes = b"", headers=None, **kwargs) -> Reply:
    sent = {**V, **(headers or {})}
    if length is None:
        sent.setdefault("Upload-Defer-Length", "1")
    else:
        sent.setdefault("Upload-Length", str(length))
    return api.request("POST", BASE, body, OCTETS if body else "", sent)


def head(api: Api, path: str, headers=None) -> Reply:
    return api.request("HEAD", path, b"", "", {**V, **(headers or {})})


def patch(
    api: Api, path: str, offset: int, body: bytes, headers=None, content_type: str = OCTETS
) -> Reply:
    sent = {**V, "Upload-Offset": str(offset), **(headers or {})}
    return api.request("PATCH", path, body, content_type, sent)


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())
