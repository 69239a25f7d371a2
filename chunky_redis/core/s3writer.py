"""One chunk into an S3 multipart upload: full parts as they fill, the rest as a tail. No Django here.

See s3.py for the layout in the bucket and why it stays consistent with the recorded offset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from . import s3parts
from .errors import ChunkyError, TooLarge
from .s3parts import MultipartUpload


class PartStore(Protocol):
    """What a writer needs of the storage (S3ChunkStorage)."""

    def upload_part(
        self, upload_id: str, upload: MultipartUpload, number: int, body: bytes
    ) -> None: ...

    def put_tail(self, upload_id: str, start: int, end: int, body: bytes) -> None: ...

    def read_tail(self, upload_id: str, base: int, end: int) -> bytes: ...

    def drop_stale_tails(self, upload_id: str, base: int, recorded: int) -> None: ...


class S3ChunkWriter:
    """One chunk's bytes into the upload's parts, the rest into a tail at ``close()``.

    Bytes collect in memory until they fill the current part (at most one part
    size per chunk in flight); the first part this chunk fills begins with the
    tail chain the recorded offset ends, read then. ``heartbeat`` runs before
    every write and every S3 request that changes something.
    """

    def __init__(
        self,
        storage: PartStore,
        upload_id: str,
        upload: MultipartUpload,
        *,
        start: int,
        limit: int | None,
        on_block: Callable[[bytes], None],
        heartbeat: Callable[[], None] | None,
        overflow: Callable[[], ChunkyError],
    ):
        self.storage, self.upload_id, self.upload = storage, upload_id, upload
        self.start = start
        self.position = start
        self.limit = limit
        self.on_block = on_block
        self.heartbeat = heartbeat or _nothing
        self.overflow = overflow
        size = upload.part_size
        self.base = s3parts.part_start(start, size)  # where the part being filled begins
        self.held = start - self.base  # its bytes before this chunk, in the tail chain
        self.buffer = bytearray()  # its bytes from this chunk

    @property
    def written(self) -> int:
        return self.position - self.start

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.limit is not None and self.written + len(data) > self.limit:
            raise self.overflow()
        ceiling = s3parts.max_upload_size(self.upload.part_size)
        if self.position + len(data) > ceiling:
            raise TooLarge(None, ceiling)
        self.heartbeat()
        self.on_block(data)
        self.buffer += data
        self.position += len(data)
        size = self.upload.part_size
        while self.held + len(self.buffer) >= size:
            self._upload_part(size - self.held)

    def _upload_part(self, take: int) -> None:
        storage, size = self.storage, self.upload.part_size
        head = b""
        if self.held:
            storage.drop_stale_tails(self.upload_id, self.base, self.start)
            head = storage.read_tail(self.upload_id, self.base, self.start)
        body = head + bytes(self.buffer[:take])
        del self.buffer[:take]
        self.heartbeat()
        storage.upload_part(self.upload_id, self.upload, s3parts.part_number(self.base, size), body)
        self.base += size
        self.held = 0

    def close(self, *, sync: bool = True) -> None:
        """Store what is left as the newest tail; without ``sync`` (an aborted chunk), nothing."""
        if sync and self.buffer:
            self.heartbeat()
            start = self.base + self.held
            self.storage.put_tail(self.upload_id, start, self.position, bytes(self.buffer))
        self.buffer = bytearray()


def _nothing() -> None:
    pass
