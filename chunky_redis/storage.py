"""The shared chunk directory. No Django here.

Every web and Celery worker sees the same directory (local disk, NFS, EFS).
A file is named after its upload id only, never after the client's filename,
and each chunk is written at the offset the store recorded (``os.pwrite``),
never appended: bytes that a dead request left behind the recorded offset
are simply overwritten by the retry.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

from .exceptions import ChunkyError, StorageError

SUFFIX = ".part"


class ChunkStorage:
    def __init__(self, directory: str, *, fsync: bool = True):
        if not directory:
            raise StorageError("No upload directory is configured (CHUNKY_REDIS_UPLOAD_DIR).")
        self.directory = directory
        self.fsync = fsync

    def path(self, upload_id: str) -> str:
        return os.path.join(self.directory, upload_id + SUFFIX)

    def writer(
        self,
        upload_id: str,
        *,
        start: int,
        limit: int | None,
        on_block: Callable[[bytes], None],
        heartbeat: Callable[[], None] | None = None,
        overflow: Callable[[], ChunkyError],
    ) -> ChunkWriter:
        try:
            os.makedirs(self.directory, exist_ok=True)
            fd = os.open(self.path(upload_id), os.O_WRONLY | os.O_CREAT, 0o640)
        except OSError as e:
            raise StorageError(f"Cannot open the chunk file: {e.strerror}.") from e
        return ChunkWriter(
            fd, start=start, limit=limit, on_block=on_block, heartbeat=heartbeat,
            overflow=overflow, fsync=self.fsync,
        )

    def delete(self, upload_id: str) -> bool:
        try:
            os.unlink(self.path(upload_id))
            return True
        except FileNotFoundError:
            return False

    def truncate(self, upload_id: str, size: int) -> None:
        os.truncate(self.path(upload_id), size)

    def exists(self, upload_id: str) -> bool:
        return os.path.exists(self.path(upload_id))

    def size(self, upload_id: str) -> int:
        return os.stat(self.path(upload_id)).st_size

    def iter_ids(self, older_than_s: float | None = None) -> Iterator[str]:
        """Upload ids that have a chunk file; with ``older_than_s``, only files untouched that long."""
        cutoff = None if older_than_s is None else time.time() - older_than_s
        try:
            entries = os.scandir(self.directory)
        except FileNotFoundError:
            return
        with entries:
            for entry in entries:
                if not entry.name.endswith(SUFFIX) or not entry.is_file():
                    continue
                if cutoff is not None and entry.stat().st_mtime > cutoff:
                    continue
                yield entry.name[: -len(SUFFIX)]


class ChunkWriter:
    """Writes one chunk's bytes at consecutive offsets and feeds them to ``on_block``.

    ``limit`` caps how many bytes this chunk may carry; one byte more calls
    ``overflow()`` for the error to raise, before that byte is written.
    ``heartbeat`` runs before each write, so that a writer that has lost its
    lock stops before it can touch the file again.
    """

    def __init__(
        self,
        fd: int,
        *,
        start: int,
        limit: int | None,
        on_block: Callable[[bytes], None],
        heartbeat: Callable[[], None] | None,
        overflow: Callable[[], ChunkyError],
        fsync: bool,
    ):
        self.fd = fd
        self.start = start
        self.position = start
        self.limit = limit
        self.on_block = on_block
        self.heartbeat = heartbeat
        self.overflow = overflow
        self.fsync = fsync

    @property
    def written(self) -> int:
        return self.position - self.start

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self.limit is not None and self.written + len(data) > self.limit:
            raise self.overflow()
        if self.heartbeat is not None:
            self.heartbeat()
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(self.fd, view, self.position)
                view = view[n:]
                self.position += n
        except OSError as e:
            raise StorageError(f"Cannot write the chunk: {e.strerror}.") from e
        self.on_block(data)

    def close(self, *, sync: bool = True) -> None:
        try:
            if sync and self.fsync and self.written:
                os.fdatasync(self.fd)
        except OSError as e:
            raise StorageError(f"Cannot flush the chunk: {e.strerror}.") from e
        finally:
            os.close(self.fd)
