"""The upload loop: send chunks, keep the checksum, resync, resume, wait for the worker.

Offsets are always the server's: after any failure the client asks for the
upload's status and continues from the offset it reports (see checksum.py for
how the checksum follows).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import requests
from tqdm import tqdm

from .checksum import hash_range
from .errors import ClientError, ServerError, TransientError, UploadFailed
from .state import StateFile, default_path, entry_key
from .transport import (
    BLOCK_SIZE,
    Backoff,
    ChunkBody,
    RateLimit,
    content_disposition,
    make_session,
    send,
)

DEFAULT_CHUNK_SIZE = 8 << 20
DEFAULT_TIMEOUT = (10.0, 300.0)  # connect, read: the server answers a chunk once it has written it
UPLOADING, PROCESSING, COMPLETE, FAILED = "uploading", "processing", "complete", "failed"


@dataclass
class Stats:
    """What one run did, for the summary (and for tests)."""

    requests: int = 0
    chunks: int = 0
    retries: int = 0
    resyncs: int = 0
    resumed_from: int | None = None
    bytes_sent: int = 0
    started: float = field(default_factory=time.monotonic)
    upload_seconds: float = 0.0


class Uploader:
    """One file to one upload endpoint (``https://host/upload/``); see ``run()``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        url: str,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        headers: Mapping[str, str] | None = None,
        progress: bool | None = False,
        state_file: str | os.PathLike[str] | None = None,
        resume: bool = True,
        filename: str | None = None,
        retries: int = 8,
        backoff: float = 0.5,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        poll_interval: float = 1.0,
        wait_timeout: float | None = None,
        limit_rate: int | None = None,
        log: Callable[[str], None] | None = None,
        session: requests.Session | None = None,
    ):
        if chunk_size <= 0:
            raise ClientError("the chunk size must be positive")
        self.path = Path(path)
        self.url = url if url.endswith("/") else url + "/"
        self.chunk_size = chunk_size
        self.session = session or make_session(headers)
        if session is not None and headers:
            self.session.headers.update(headers)
        self.progress = progress
        self.state = StateFile(state_file or default_path(self.path)) if resume else None
        self.filename = filename or self.path.name
        self.backoff = Backoff(retries=retries, base=backoff)
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self.rate_limit = RateLimit(limit_rate) if limit_rate else None
        self._log = log
        self.stats = Stats()
        self.upload_id: str | None = None
        self.algorithm = "md5"
        self.hasher = hashlib.md5()
        self.offset = 0  # bytes the server has recorded; self.hasher covers exactly these
        self.size = 0

    # -- public --------------------------------------------------------------
    @property
    def status_url(self) -> str:
        assert self.upload_id is not None
        return f"{self.url}{self.upload_id}/"

    def run(self, *, wait: bool = True) -> dict[str, Any]:
        """Upload (or resume) the file and complete it.

        Returns the server's final status (``"status": "complete"``), or with
        ``wait=False`` the completion answer (``"status": "processing"``).
        Raises UploadFailed when post-processing fails, ClientError otherwise.
        """
        try:
            info = os.stat(self.path)
        except OSError as e:
            raise ClientError(f"cannot read {self.path}: {e.strerror}") from e
        if not stat.S_ISREG(info.st_mode):
            raise ClientError(f"{self.path} is not a regular file")
        if info.st_size == 0:
            raise ClientError(f"{self.path} is empty: the protocol has no empty upload")
        self.size = info.st_size
        key = entry_key(self.url, info.st_size, info.st_mtime_ns)
        with open(self.path, "rb", buffering=0) as file, self._bar() as bar:
            self.file, self.bar = file, bar
            try:
                return self._run(key, wait)
            finally:
                self.stats.retries = self.backoff.total

    # -- steps ---------------------------------------------------------------
    def _run(self, key: str, wait: bool) -> dict[str, Any]:
        status = self._resume(key)
        if status is None:
            while True:
                self._send_chunks(key)
                status = self._complete(key)
                if status is not None:
                    break
        if not wait:
            return status
        return self._wait(key, status)

    def _resume(self, key: str) -> dict[str, Any] | None:
        """Continue the upload the state file names; None when there is nothing to continue."""
        entry = self.state.get(key) if self.state else None
        if entry is None:
            return None
        self.upload_id = entry["upload_id"]
        try:
            status = self._status()
        except ServerError as e:
            if e.status_code not in (404, 410):
                raise
            self.log(f"upload {self.upload_id} is gone ({e.detail}); starting over")
            self._forget(key)
            self.upload_id = None
            return None
        if status.get("status") == UPLOADING:
            offset = status.get("offset")
            self._use_algorithm(status)
            self.stats.resumed_from = offset if isinstance(offset, int) else 0
            self.log(f"resuming upload {self.upload_id} at byte {offset} of {self.size}")
            self._resync(offset, verb="hashing the part already sent")
            return None
        if status.get("status") in (PROCESSING, COMPLETE, FAILED):
            self.offset = self.size
            self.bar.n = self.size
            self.log(f"upload {self.upload_id} was already sent; it is {status['status']}")
            return status
        self.log(f"upload {self.upload_id} is {status.get('status')}; starting over")
        self._forget(key)
        self.upload_id = None
        return None

    def _send_chunks(self, key: str) -> None:
        mismatches = 0
        while self.offset < self.size:
            end = min(self.offset + self.chunk_size, self.size)
            try:
                answer = self._put(self.offset, end)
            except TransientError as e:
                self.log(f"{e}; retrying")
                self.backoff.wait(e)
                if self.upload_id is not None:
                    self._resync(self._status().get("offset"))
                continue
            except ServerError as e:
                if e.code != "offset_mismatch" or self.upload_id is None:
                    if e.status_code in (404, 410):
                        self._forget(key)
                    raise
                # Typically our previous attempt was recorded but its answer lost.
                mismatches += 1
                if mismatches > self.backoff.retries:
                    raise
                self.log(
                    f"the server is at byte {e.body.get('offset')}, not {self.offset}; resyncing"
                )
                self._resync(e.body.get("offset"))
                continue
            self.backoff.reset()
            mismatches = 0
            if self.upload_id is None:
                self.upload_id = answer["upload_id"]
                self._remember(key)
                self._use_algorithm(self._status())

    def _put(self, start: int, end: int) -> dict[str, Any]:
        """Send bytes [start, end); on success the offset and the hasher move to ``end``."""
        hasher = self.hasher.copy()
        body = ChunkBody(
            self.file,
            start,
            end - start,
            hasher=hasher,
            on_block=self.bar.update,
            rate_limit=self.rate_limit,
        )
        headers = {
            "Content-Range": f"bytes {start}-{end - 1}/{self.size}",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(end - start),
        }
        if self.upload_id is None:
            headers["Content-Disposition"] = content_disposition(self.filename)
        url = self.url if self.upload_id is None else self.status_url
        began = time.monotonic()
        self.stats.requests += 1
        if self.rate_limit is not None:
            self.rate_limit.restart()
        try:
            answer = send(
                self.session, "PUT", url, data=body, headers=headers, timeout=self.timeout
            )
        except BaseException:
            self._set_bar(self.offset)
            raise
        finally:
            self.stats.bytes_sent += body.length - body.remaining
            self.stats.upload_seconds += time.monotonic() - began
        self.stats.chunks += 1
        offset = answer.get("offset")
        if offset == end:
            self.offset, self.hasher = end, hasher
        else:
            self._resync(offset)
        return answer

    def _complete(self, key: str) -> dict[str, Any] | None:
        """Send the checksum; None when the server turned out to need more bytes."""
        digest = self.hasher.hexdigest()
        while True:
            try:
                answer = send(
                    self.session,
                    "POST",
                    self.status_url,
                    json={self.algorithm: digest},
                    timeout=self.timeout,
                )
                self.stats.requests += 1
                self.backoff.reset()
                return answer
            except TransientError as e:
                self.stats.requests += 1
                self.log(f"{e}; retrying")
                self.backoff.wait(e)
            except ServerError as e:
                self.stats.requests += 1
                if (
                    e.code == "already_complete"
                ):  # an earlier attempt went through, its answer was lost
                    return self._status()
                if e.code == "incomplete":
                    self._resync(e.body.get("offset"))
                    return None
                if e.code in ("checksum_mismatch", "upload_failed") or e.status_code in (404, 410):
                    self._forget(key)
                raise

    def _wait(self, key: str, status: dict[str, Any]) -> dict[str, Any]:
        """Poll the status until the worker has finished."""
        deadline = None if self.wait_timeout is None else time.monotonic() + self.wait_timeout
        interval = min(0.2, self.poll_interval)
        while True:
            if status.get("status") == COMPLETE:
                self._forget(key)
                return status
            if status.get("status") not in (UPLOADING, PROCESSING):
                self._forget(key)
                raise UploadFailed(status)
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(
                    f"upload {self.upload_id} is still {status.get('status')} "
                    f"after {self.wait_timeout:g} s; "
                    f"check later with: python -m chunky_redis status {self.status_url}"
                )
            time.sleep(interval)
            interval = min(interval * 1.5, self.poll_interval)
            status = self._status()

    # -- helpers ---------------------------------------------------------------
    def _status(self) -> dict[str, Any]:
        while True:
            try:
                self.stats.requests += 1
                answer = send(self.session, "GET", self.status_url, timeout=self.timeout)
                self.backoff.reset()
                return answer
            except TransientError as e:
                self.log(f"{e}; retrying")
                self.backoff.wait(e)

    def _use_algorithm(self, status: dict[str, Any]) -> None:
        """Hash with the server's algorithm (md5 unless it is configured otherwise)."""
        algorithm = str(status.get("checksum_algorithm") or "md5").lower()
        if algorithm == self.algorithm:
            return
        try:
            hashlib.new(algorithm)
        except ValueError:
            raise ClientError(
                f"the server checks uploads with {algorithm}, which this Python lacks"
            ) from None
        self.algorithm = algorithm
        confirmed, self.offset, self.hasher = self.offset, 0, hashlib.new(algorithm)
        self._resync(confirmed, verb=f"hashing with {algorithm}")

    def _resync(self, server_offset: Any, verb: str = "hashing") -> None:
        """Move to the server's offset, rebuilding the checksum from the local file."""
        if not isinstance(server_offset, int) or not 0 <= server_offset <= self.size:
            raise ClientError(f"the server reports an impossible offset: {server_offset!r}")
        if server_offset != self.offset:
            self.stats.resyncs += 1
        if server_offset < self.offset:
            self.offset, self.hasher = 0, hashlib.new(self.algorithm)
        if server_offset > self.offset:
            self._hash_range(self.offset, server_offset, verb)
        self.offset = server_offset
        self._set_bar(server_offset)

    def _hash_range(self, start: int, end: int, verb: str) -> None:
        show = end - start >= 64 * BLOCK_SIZE and not self.bar.disable
        hash_range(self.file, self.hasher, start, end, desc=verb, show=show)

    def _remember(self, key: str) -> None:
        if self.state is None:
            return
        try:
            self.state.put(
                key, {"upload_id": self.upload_id, "status_url": self.status_url, "url": self.url}
            )
        except OSError as e:
            self.log(
                f"cannot write the state file {self.state.path} ({e.strerror}); "
                "this upload cannot be resumed"
            )
            self.state = None

    def _forget(self, key: str) -> None:
        if self.state is not None:
            try:
                self.state.remove(key)
            except OSError:
                pass

    def _bar(self) -> tqdm[NoReturn]:
        # progress=None: a bar only on a terminal; True forces it, False hides it.
        return tqdm(
            total=self.size,
            desc=_shorten(self.filename),
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=None if self.progress is None else not self.progress,
            dynamic_ncols=True,
            mininterval=0.2,
            smoothing=0.1,
        )

    def _set_bar(self, n: int) -> None:
        self.bar.n = n
        self.bar.refresh()

    def log(self, message: str) -> None:
        if self._log is not None:
            self._log(message)


def _shorten(name: str, width: int = 24) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
