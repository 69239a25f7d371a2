"""An upload that keeps going through a Redis failover or slot migration, checking every answer.

It behaves as a resuming client does (on 409/503 it asks for the offset and carries on
from there) and checks, after each answer, what the issue asks: the offset the client
is told matches the bytes the chunk file holds, and the checksum state in Redis is the
digest of exactly the bytes before the recorded offset.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from chunky_redis import runtime
from chunky_redis.core.checksums import ResumableHash
from chunky_redis.exceptions import StoreUnavailable
from tests.support.api import Api, ClientApi


@dataclass
class CheckedUpload:
    api: Api
    data: bytes
    chunk: int
    upload_dir: Path
    pace_s: float = 0.01  # between chunks, so that the disruption lands mid-upload
    # The last chunk waits for this: the upload cannot finish before the disruption has.
    disruption_over: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    upload_id: str = ""
    told: list[tuple[float, int, int]] = field(default_factory=list)  # (when, HTTP status, offset)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test thread
            self.error = e

    def _run(self) -> None:
        first = self.data[: self.chunk]
        while True:
            reply = self.api.put(
                "/upload/", first, content_range=f"bytes 0-{self.chunk - 1}/{len(self.data)}"
            )
            if reply.status == 200:
                break
            assert reply.status == 503, reply.body  # Redis answered nothing yet: try again
            time.sleep(0.05)
        self.upload_id = reply.data["upload_id"]
        offset = self._told(reply.status, reply.data["offset"])
        self.started.set()
        while offset < len(self.data):
            end = min(offset + self.chunk, len(self.data))
            if end == len(self.data):
                self.disruption_over.wait(timeout=120)
            reply = self.api.put(
                f"/upload/{self.upload_id}/",
                self.data[offset:end],
                content_range=f"bytes {offset}-{end - 1}/{len(self.data)}",
            )
            if reply.status == 200:
                offset = self._told(reply.status, reply.data["offset"])
            elif reply.status == 400 and reply.data["code"] == "offset_mismatch":
                offset = self._told(reply.status, reply.data["offset"])
            else:
                # 503 while Redis fails over, 409 while the lock of a request cut short lapses
                assert reply.status in (409, 503), reply.body
                self.told.append((time.monotonic(), reply.status, -1))
                offset = self._ask_offset()
            time.sleep(self.pace_s)

    def _ask_offset(self) -> int:
        while True:
            reply = self.api.get(f"/upload/{self.upload_id}/")
            if reply.status == 200:
                return self._told(reply.status, reply.data["offset"])
            assert reply.status == 503, reply.body
            self.told.append((time.monotonic(), reply.status, -1))
            time.sleep(0.05)

    def _told(self, status: int, offset: int) -> int:
        self.told.append((time.monotonic(), status, offset))
        stored = (self.upload_dir / f"{self.upload_id}.part").read_bytes()
        assert stored[:offset] == self.data[:offset], f"the file disagrees with offset {offset}"
        self.check_record()
        return offset

    def check_record(self) -> None:
        """The record's checksum state is the digest of the bytes before its offset."""
        for _ in range(200):
            try:
                record = runtime.get_store().get(self.upload_id)
                break
            except StoreUnavailable:
                time.sleep(0.05)
        else:
            raise AssertionError("Redis did not come back")
        assert record is not None
        digest = ResumableHash(record.algorithm, record.hash_state).hexdigest()
        assert digest == hashlib.md5(self.data[: record.offset]).hexdigest(), (
            f"the checksum state disagrees with offset {record.offset}"
        )

    def rollbacks(self) -> int:
        """How often the offset the client was told went backwards (a failover lost writes)."""
        offsets = [offset for _, _, offset in self.told if offset >= 0]
        return sum(1 for a, b in zip(offsets, offsets[1:], strict=False) if b < a)

    def answers_between(self, start: float, end: float) -> int:
        return sum(1 for when, _, _ in self.told if start <= when <= end)


def run_through(upload: CheckedUpload, disrupt) -> tuple[float, float]:
    """Upload in a thread while ``disrupt()`` runs; returns when the disruption ran."""
    thread = threading.Thread(target=upload.run, name="checked-upload", daemon=True)
    thread.start()
    try:
        assert upload.started.wait(timeout=60), upload.error
        time.sleep(upload.pace_s * 5)  # a few chunks in
        begun = time.monotonic()
        disrupt()
        ended = time.monotonic()
    finally:
        upload.disruption_over.set()
        thread.join(timeout=180)
    assert not thread.is_alive(), "the upload did not finish"
    if upload.error is not None:
        raise upload.error
    return begun, ended


def complete(api: Api, upload: CheckedUpload) -> dict:
    """Complete with the md5 of the data; the eager Celery task finalizes it at once."""
    md5 = hashlib.md5(upload.data).hexdigest()
    for _ in range(100):
        reply = api.post_json(f"/upload/{upload.upload_id}/", {"md5": md5})
        if reply.status not in (409, 503):  # Redis failing over, a lapsing lock
            break
        time.sleep(0.05)
    assert reply.status == 200, reply.body
    for _ in range(100):
        reply = api.get(f"/upload/{upload.upload_id}/")
        if reply.status == 200 and reply.data["status"] in ("complete", "failed"):
            return reply.data
        time.sleep(0.05)
    raise AssertionError(f"the upload did not finish: {reply.body!r}")


def assert_completed(api: Api, upload: CheckedUpload, media_root: Path) -> None:
    """Complete it; the final file has the data's md5."""
    status = complete(api, upload)
    assert status["status"] == "complete", status
    stored = (media_root / status["final_name"]).read_bytes()
    assert hashlib.md5(stored).hexdigest() == hashlib.md5(upload.data).hexdigest()


def start_waiting_for_a_replica(settings, size: int) -> tuple[ClientApi, bytes, str]:
    """WAIT for 1 replica (at most 200 ms); a new upload of ``size`` bytes, its first 1000 sent."""
    settings.CHUNKY_REDIS_WAIT_REPLICAS = 1
    settings.CHUNKY_REDIS_WAIT_TIMEOUT = 0.2
    api, data = ClientApi(), os.urandom(size)
    reply = api.put("/upload/", data[:1000], content_range=f"bytes 0-999/{size}")
    assert reply.status == 200, reply.body
    return api, data, reply.data["upload_id"]


def send_while_stalled(process, api: Api, upload_id: str, data: bytes, start: int, end: int):
    """PUT bytes [start, end) while ``process`` (a replica's Popen) is stopped, then resume it."""
    process.send_signal(signal.SIGSTOP)
    try:
        return api.put(
            f"/upload/{upload_id}/",
            data[start:end],
            content_range=f"bytes {start}-{end - 1}/{len(data)}",
        )
    finally:
        process.send_signal(signal.SIGCONT)


def upload_and_wait(api: Api, data: bytes, chunk: int, timeout: float = 60) -> dict:
    """Upload ``data`` in chunks, complete it, and return the final status."""
    total = len(data)
    reply = api.put(
        "/upload/", data[:chunk], content_range=f"bytes 0-{min(chunk, total) - 1}/{total}"
    )
    assert reply.status == 200, reply.body
    upload_id = reply.data["upload_id"]
    for start in range(chunk, total, chunk):
        end = min(start + chunk, total)
        reply = api.put(
            f"/upload/{upload_id}/",
            data[start:end],
            content_range=f"bytes {start}-{end - 1}/{total}",
        )
        assert reply.status == 200, reply.body
    reply = api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()})
    assert reply.status == 200, reply.body
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.get(f"/upload/{upload_id}/").data
        if status["status"] in ("complete", "failed"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"upload {upload_id} did not finish: {status}")
