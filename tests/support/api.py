"""One small HTTP interface over two transports, so protocol tests run both ways:
through Django's test client (in-process) and over a real socket to a server process.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.test.client import encode_multipart

BOUNDARY = "chunkyBoundary7MA4YWxkTrZu0gW"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    data: Any = field(default=None)

    def __post_init__(self) -> None:
        try:
            self.data = json.loads(self.body) if self.body else None
        except ValueError:
            self.data = None

    @property
    def is_json(self) -> bool:
        return self.headers.get("content-type", "").startswith("application/json")


def multipart(
    file_bytes: bytes | None, part_name: str = "chunk.bin", field_name: str = "file", fields=None
):
    data: dict[str, Any] = dict(fields or {})
    if file_bytes is not None:
        data[field_name] = SimpleUploadedFile(part_name, file_bytes, "application/octet-stream")
    return encode_multipart(BOUNDARY, data), MULTIPART


class Api:
    name: str

    def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "", headers=None
    ) -> Reply:
        raise NotImplementedError

    # conveniences
    def put(
        self,
        path,
        body=b"",
        *,
        content_range=None,
        content_type="application/octet-stream",
        headers=None,
    ):
        headers = dict(headers or {})
        if content_range:
            headers["Content-Range"] = content_range
        return self.request("PUT", path, body, content_type, headers)

    def post_json(self, path, payload, headers=None):
        return self.request("POST", path, json.dumps(payload).encode(), "application/json", headers)

    def get(self, path, headers=None):
        return self.request("GET", path, b"", "", headers)


class ClientApi(Api):
    def __init__(self, client: Client | None = None):
        self.client = client or Client()
        self.name = "client"

    def request(self, method, path, body=b"", content_type="", headers=None):
        extra = {}
        for key, value in (headers or {}).items():
            extra["HTTP_" + key.upper().replace("-", "_")] = value
        if body or content_type:
            extra["CONTENT_TYPE"] = content_type
        response = self.client.generic(
            method, path, body, content_type or "application/octet-stream", **extra
        )
        return Reply(
            response.status_code, {k.lower(): v for k, v in response.items()}, response.content
        )


class LiveApi(Api):
    def __init__(self, base_url: str):
        self.base_url = base_url
        self.session = requests.Session()
        self.name = "live"

    def request(self, method, path, body=b"", content_type="", headers=None):
        headers = dict(headers or {})
        if content_type:
            headers["Content-Type"] = content_type
        response = self.session.request(
            method, self.base_url + path, data=body, headers=headers, timeout=120
        )
        return Reply(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )
