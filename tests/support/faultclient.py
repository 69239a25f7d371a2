"""An upload client for fault tests that retries the way a real client does.

It sends chunks with Content-Range, and after anything that leaves it unsure
(a broken connection, a timeout, 409, 5xx) it asks the status URL for the
server's offset and continues from there; an ``offset_mismatch`` answer gives
the offset directly. A lost record (404) starts the upload over from byte 0,
as a client must. It never gives up before its deadline, and it keeps a log of
every answer so a test can tell what the server did.

The bundled client (chunky_redis.client) does the same with a state file and a
bounded retry budget; this one is smaller, hooks into the body as it is sent
(to kill a server in the middle of a chunk) and classifies what happened.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import requests

RETRY_STATUS = {409, 425, 429, 500, 502, 503, 504}
COMPLETE, FAILED, STUCK, ERROR = "complete", "failed", "stuck", "error"


class _Transport(Exception):
    """No answer: the connection broke or timed out."""


class _Restart(Exception):
    """The upload's record is gone (404/410): start over."""


@dataclass
class Outcome:
    md5: str
    size: int
    upload_id: str | None = None  # the upload the client finished (or last worked on)
    abandoned: list[str] = field(default_factory=list)  # uploads it started over from
    abandoned_at: list[float] = field(default_factory=list)  # when (wall clock) it got their 404
    state: str = "pending"  # complete | failed | stuck | error
    status: dict[str, Any] = field(default_factory=dict)  # the last status answer
    answers: Counter = field(default_factory=Counter)  # (status, code) -> count
    non_json: list[str] = field(default_factory=list)  # answers that were not JSON
    transport_errors: int = 0
    error: str = ""
    trace: deque = field(
        default_factory=lambda: deque(maxlen=12)
    )  # the last requests, for a report
    recoveries: list[float] = field(
        default_factory=list
    )  # seconds from a mark() to the next accepted chunk

    @property
    def restarts(self) -> int:
        return len(self.abandoned)


class _Body:
    """A chunk as a request body with a length (so it is not sent chunked), read in
    pieces, optionally at a limited rate, reporting progress as it goes."""

    def __init__(self, client: RetryingClient, data: memoryview, rate: int | None):
        self.client = client
        self.data = data
        self.position = 0
        self.rate = rate
        self.started = time.monotonic()

    def __len__(self) -> int:
        return len(self.data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = len(self.data)
        if self.rate:
            size = min(size, max(1, self.rate // 20))
            ahead = self.position / self.rate - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(ahead)
        piece = bytes(self.data[self.position : self.position + size])
        self.position += len(piece)
        self.client.body_sent = self.position
        return piece


class RetryingClient:
    def __init__(
        self,
        base_url: str,
        *,
        chunk_size: int = 256 * 1024,
        timeout: tuple[float, float] = (3.0, 10.0),
        deadline: float = 120.0,
        rate: int | None = None,
        filename: str = "data.bin",
        seed: int | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.deadline = deadline
        self.rate = rate
        self.filename = filename
        self.random = random.Random(seed)
        self.session = requests.Session()
        # What the body is doing right now, for tests that strike in the middle of a chunk.
        self.in_body = threading.Event()
        self.body_sent = 0
        self._marks: dict[str, float] = {}
        self.current: Outcome | None = None  # the upload in progress

    def mark(self, name: str) -> None:
        """Remember now; the outcome reports how long after it the next chunk was accepted."""
        self._marks[name] = time.monotonic()

    def accepted_since(self, name: str) -> bool:
        """A chunk was accepted since ``mark(name)``."""
        return name not in self._marks

    # -- one request -----------------------------------------------------------
    def _request(
        self, out: Outcome, method: str, path: str, **kwargs: Any
    ) -> tuple[int, dict[str, Any]]:
        try:
            r = self.session.request(
                method, self.base_url + path, timeout=self.timeout, allow_redirects=False, **kwargs
            )
        except requests.RequestException as e:
            out.transport_errors += 1
            out.trace.append(f"{method} {path[8:16]} {type(e).__name__}")
            self.session.close()  # a half-used connection must not be reused
            raise _Transport(str(e)) from e
        finally:
            self.in_body.clear()
        try:
            body = r.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not r.headers.get("Content-Type", "").startswith(
            "application/json"
        ):
            out.non_json.append(f"{method} {path} -> {r.status_code} {r.text[:120]!r}")
            body = body if isinstance(body, dict) else {}
        out.answers[(r.status_code, body.get("code", ""))] += 1
        out.trace.append(
            f"{method} {path[8:16]} {r.status_code} {body.get('code') or body.get('status', '')}"
        )
        return r.status_code, body

    def _backoff(self, attempt: int) -> None:
        time.sleep(self.random.uniform(0.5, 1.0) * min(1.0, 0.05 * 2**attempt))

    # -- the upload --------------------------------------------------------------
    def upload(self, data: bytes) -> Outcome:
        out = Outcome(md5=hashlib.md5(data).hexdigest(), size=len(data))
        self.current = out
        end = time.monotonic() + self.deadline
        view = memoryview(data)
        upload_id: str | None = None
        offset = 0
        resync = False
        attempt = 0
        while True:
            if time.monotonic() > end:
                out.state = STUCK
                out.error = f"deadline passed at offset {offset} of {len(data)}"
                break
            try:
                if upload_id is not None and resync:
                    offset, done = self._resync(out, upload_id)
                    resync = False
                    if done:
                        self._wait(out, upload_id, end)
                        break
                if upload_id is None or offset < len(data):
                    status, body = self._put(out, view, upload_id, offset)
                    if status == 200:
                        upload_id = upload_id or body["upload_id"]
                        out.upload_id = upload_id
                        offset = body["offset"]
                        attempt = 0
                        self._accepted(out)
                        continue
                    code = body.get("code")
                    if status == 400 and code == "offset_mismatch" and upload_id is not None:
                        offset = body["offset"]
                        continue
                    if status in (404, 410) and upload_id is not None:
                        raise _Restart()
                    if status in RETRY_STATUS:
                        attempt += 1
                        self._backoff(attempt)
                        resync = True
                        continue
                    out.state, out.error = ERROR, f"chunk refused: {status} {body}"
                    break
                status, body = self._request(
                    out, "POST", f"/upload/{upload_id}/", json={"md5": out.md5}
                )
                code = body.get("code")
                if status == 200 or (status == 400 and code == "already_complete"):
                    self._wait(out, upload_id, end)
                    break
                if status == 400 and code == "incomplete":
                    offset = body["offset"]
                    continue
                if status in (404, 410):
                    raise _Restart()
                if status in RETRY_STATUS:
                    attempt += 1
                    self._backoff(attempt)
                    resync = True
                    continue
                # checksum_mismatch here means the server recorded other bytes than we sent
                out.state, out.error = ERROR, f"completion refused: {status} {body}"
                break
            except _Transport:
                attempt += 1
                self._backoff(attempt)
                resync = True
            except _Restart:
                if upload_id is not None:
                    out.abandoned.append(upload_id)
                    out.abandoned_at.append(time.time())
                upload_id, out.upload_id, offset, resync = None, None, 0, False
        return out

    def _put(
        self, out: Outcome, view: memoryview, upload_id: str | None, offset: int
    ) -> tuple[int, dict[str, Any]]:
        end = min(offset + self.chunk_size, len(view))
        headers = {
            "Content-Range": f"bytes {offset}-{end - 1}/{len(view)}",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{self.filename}"',
        }
        path = f"/upload/{upload_id}/" if upload_id else "/upload/"
        self.body_sent = 0
        self.in_body.set()
        return self._request(
            out, "PUT", path, data=_Body(self, view[offset:end], self.rate), headers=headers
        )

    def _resync(self, out: Outcome, upload_id: str) -> tuple[int, bool]:
        """The server's offset, and whether the upload is past uploading."""
        status, body = self._request(out, "GET", f"/upload/{upload_id}/")
        if status in (404, 410):
            raise _Restart()
        if status != 200:
            raise _Transport(f"status answered {status}")
        return body["offset"], body.get("status") != "uploading"

    def _wait(self, out: Outcome, upload_id: str, end: float) -> None:
        while time.monotonic() < end:
            try:
                status, body = self._request(out, "GET", f"/upload/{upload_id}/")
            except _Transport:
                time.sleep(0.2)
                continue
            if status in (404, 410):
                raise _Restart()
            if status == 200:
                out.status = body
                if body.get("status") in (COMPLETE, FAILED):
                    out.state = body["status"]
                    return
                if body.get("status") == "uploading":
                    # a completion whose hand-off failed went back to uploading: complete again
                    raise _Transport("back to uploading")
            time.sleep(0.1)
        out.state = STUCK
        out.error = f"still {out.status.get('status')} at the deadline"

    def _accepted(self, out: Outcome) -> None:
        now = time.monotonic()
        for name, since in list(self._marks.items()):
            out.recoveries.append(now - since)
            del self._marks[name]
