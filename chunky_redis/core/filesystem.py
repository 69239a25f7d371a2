"""The chunk storage on a shared directory. No Django here.

Every web and Celery worker sees the same directory (local disk, NFS, EFS).
A file is named after its upload id only, never after the client's filename,
and each chunk is written at the offset the store recorded (``os.pwrite``),
never appended: bytes that a dead request left behind the recorded offset
are simply overwritten by the retry.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .checksums import file_hexdigest
from .errors import ChunkFileMissing, ChunkyError, StorageError
from .storage import ChunkStorage, FinalTarget

SUFFIX = ".part"

# Blocks at least this large are written and hashed on helper threads while the request
# thread receives the next one (the hash and the syscalls release the GIL); smaller ones
# are handled inline, where a hand-off would cost more (ChunkWriter).
OVERLAP_MIN_BLOCK = 256 * 1024
_SYNC_FILE_RANGE_WRITE = 2
T = TypeVar("T")


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(2): start the writeback of a block without waiting for it."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return lambda fd, offset, length: func(fd, offset, length, _SYNC_FILE_RANGE_WRITE) and None


_sync_file_range = _load_sync_file_range()
logger = logging.getLogger("chunky_redis")
_pools: dict[str, ThreadPoolExecutor] = {}
_pools_pid = 0
_pools_lock = threading.Lock()
# The chunk writers of this process with a block on the pool (weakly: a writer dropped without
# close() leaves it). Only a writer alone there when its chunk hands off its first block uses the
# hash lane.
_on_pool: weakref.WeakSet[ChunkWriter] = weakref.WeakSet()


def _gevent_patched() -> bool:
    """Whether gevent has monkey-patched threading here (gunicorn's gevent worker does)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


def _executor(name: str, workers: int) -> ThreadPoolExecutor:
    """One executor of each name per process (created after a server forks its workers).

    Under gevent a patched ThreadPoolExecutor would run its jobs as greenlets
    on the hub, one at a time and blocking every other connection of the
    worker; gevent's own executor keeps native threads (and its futures wait
    cooperatively), so hashing and the file syscalls run beside the hub.
    """
    global _pools_pid
    if _pools_pid != os.getpid() or name not in _pools:
        with _pools_lock:
            if _pools_pid != os.getpid():
                _pools.clear()  # a forked child has none of its parent's threads
                _pools_pid = os.getpid()
            if name not in _pools:
                if _gevent_patched():
                    from gevent.threadpool import ThreadPoolExecutor as NativePool

                    _pools[name] = NativePool(max_workers=workers)
                else:
                    _pools[name] = ThreadPoolExecutor(
                        max_workers=workers, thread_name_prefix=f"chunky-{name}"
                    )
    return _pools[name]


def _hash_pool() -> ThreadPoolExecutor:
    """The helper pool: blocks' writes, and their hashes when the cores are busy."""
    return _executor("hash", 4)


def _hash_lane() -> ThreadPoolExecutor:
    """One thread that hashes, in the order the blocks were queued, for a chunk alone on the
    pool: its next block's hash waits in the lane, not for the request to hand it over."""
    return _executor("lane", 1)


class _Failed:
    """A pool job's error, returned rather than raised: gevent's pool prints the traceback of
    every job that raises (twice, on stderr), so each refused chunk (a full disk) spammed the log
    with what the request reports anyway."""

    def __init__(self, error: BaseException):
        self.error = error


def _quietly(func: Callable[..., T], *args: Any, **kwargs: Any) -> T | _Failed:
    try:
        return func(*args, **kwargs)
    except Exception as e:
        return _Failed(e)


def _submit(func: Callable[..., T], *args: Any) -> Future[T | _Failed]:
    """Run ``func`` on the pool; ``_outcome()`` of the future gives its result or raises its error."""
    return _hash_pool().submit(_quietly, func, *args)


def _queue(func: Callable[..., T], *args: Any) -> Future[T | _Failed]:
    """Run ``func`` on the hash lane, after every job queued there before it."""
    return _hash_lane().submit(_quietly, func, *args)


def _outcome(future: Future[T | _Failed]) -> T:
    result = future.result()
    if isinstance(result, _Failed):
        raise result.error
    return result


def _off_hub(func: Callable[..., T], *args: Any) -> T:
    """Run a file syscall that can wait for the disk (fdatasync) on the native pool under gevent,
    where it would stall every connection of the worker."""
    if _gevent_patched():
        return _outcome(_submit(func, *args))
    return func(*args)


class FileSystemChunkStorage(ChunkStorage):
    """One ``<upload_id>.part`` file per upload in ``directory``."""

    can_concatenate = True

    def __init__(self, directory: str, *, fsync: bool = True, sync_chunks: bool = True):
        """``fsync``: sync at all; ``sync_chunks``: each chunk before it is recorded (else the
        session calls ``sync()`` at the points deferred durability chooses: durability.py)."""
        if not directory:
            raise StorageError("No upload directory is configured (CHUNKY_REDIS_UPLOAD_DIR).")
        self.directory = directory
        self.fsync = fsync
        self.sync_chunks = sync_chunks

    def path(self, upload_id: str) -> str:
        return os.path.join(self.directory, upload_id + SUFFIX)

    def writer(
        self,
        upload_id: str,
        *,
        create: bool,
        start: int,
        limit: int | None,
        on_block: Callable[[bytes], None],
        heartbeat: Callable[[], None] | None = None,
        overflow: Callable[[], ChunkyError],
    ) -> ChunkWriter:
        """Open the upload's file for one chunk.

        Only ``create`` (a new upload, whose creation marker is set) makes the
        file, and never over an existing one. Appending never creates it: had
        the file gone, a new one would be a hole where the first bytes were,
        and the digest, computed on the stream, would not notice.
        """
        flags = os.O_WRONLY | (os.O_CREAT | os.O_EXCL if create else 0)
        try:
            if create:
                os.makedirs(self.directory, exist_ok=True)
            fd = os.open(self.path(upload_id), flags, 0o640)
        except FileNotFoundError as e:
            logger.error("chunky_redis: the chunk file of upload %s is missing", upload_id)
            raise ChunkFileMissing() from e
        except OSError as e:
            raise StorageError(f"Cannot open the chunk file: {e.strerror}.") from e
        try:
            stored = os.fstat(fd).st_size
        except OSError as e:
            os.close(fd)
            raise StorageError(f"Cannot open the chunk file: {e.strerror}.") from e
        if stored < start:  # bytes the store counts as received are gone
            os.close(fd)
            logger.error(
                "chunky_redis: the chunk file of upload %s holds %s of %s bytes received",
                upload_id,
                stored,
                start,
            )
            raise ChunkFileMissing()
        return ChunkWriter(
            fd,
            start=start,
            limit=limit,
            on_block=on_block,
            heartbeat=heartbeat,
            overflow=overflow,
            fsync=self.fsync and self.sync_chunks,
        )

    def size(self, upload_id: str) -> int | None:
        try:
            return os.path.getsize(self.path(upload_id))
        except FileNotFoundError:
            return None

    def digest(self, upload_id: str, algorithm: str, length: int) -> str:
        return file_hexdigest(self.path(upload_id), algorithm, length)

    def move_into(self, upload_id: str, target: FinalTarget, name: str) -> str:
        path = self.path(upload_id)
        stored = target.adopt(path, name)  # a rename on one volume: no copy, no window
        if stored is None:
            with open(path, "rb") as f:
                stored = target.save(name, f)
            os.unlink(path)
        return stored

    def delete(self, upload_id: str) -> bool:
        try:
            os.unlink(self.path(upload_id))
            return True
        except FileNotFoundError:
            return False

    def truncate(self, upload_id: str, size: int) -> None:
        os.truncate(self.path(upload_id), size)

    def sync(self, upload_id: str) -> None:
        if not self.fsync:
            return
        try:
            fd = os.open(self.path(upload_id), os.O_RDONLY)
        except FileNotFoundError as e:
            raise ChunkFileMissing() from e
        except OSError as e:
            raise StorageError(f"Cannot open the chunk file: {e.strerror}.") from e
        try:
            _off_hub(os.fdatasync, fd)
        except OSError as e:
            raise StorageError(f"Cannot flush the chunk file: {e.strerror}.") from e
        finally:
            os.close(fd)

    def feed(
        self, upload_id: str, start: int, length: int, on_block: Callable[[bytes], None]
    ) -> int:
        read = 0
        try:
            with open(self.path(upload_id), "rb") as f:
                f.seek(start)
                while read < length and (block := f.read(min(1 << 20, length - read))):
                    on_block(block)
                    read += len(block)
        except FileNotFoundError as e:
            raise ChunkFileMissing() from e
        except OSError as e:
            raise StorageError(f"Cannot read the chunk file: {e.strerror}.") from e
        return read

    def concatenate(
        self, upload_id: str, part_ids: list[str], on_block: Callable[[bytes], None]
    ) -> int:
        written = 0
        try:
            with open(self.path(upload_id), "wb") as out:
                for part_id in part_ids:
                    with open(self.path(part_id), "rb") as part:
                        while block := part.read(1 << 20):
                            out.write(block)
                            on_block(block)
                            written += len(block)
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
        except FileNotFoundError as e:
            raise ChunkFileMissing() from e
        except OSError as e:
            raise StorageError(f"Cannot concatenate the parts: {e.strerror}.") from e
        return written

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

    A block of ``OVERLAP_MIN_BLOCK`` or more with more of the chunk after it is
    handed off, so that the caller receives the next block meanwhile. The
    file and the hash are complete when ``close()`` returns (a block handed to
    ``write()`` must therefore not be changed afterwards). How it is handed off
    is chosen at the chunk's first such block:

    - **Alone** (no other chunk of this process has a block on the pool): the
      block's write goes to the pool and its hash to the hash lane, one thread
      that runs its jobs in the order they came. The md5 is one stream and
      cannot be split; written one after the other, each block's write was on
      its critical path (2 ms a MiB where the page cache is slow to grow), and
      each block's hash waited for the request to see the last one end and
      hand it over (docs/performance.md). So two blocks may be in flight: the
      next block's hash waits in the lane, and ``write()`` waits for a block's
      jobs only before handing off the block after next.
    - **Busy** (another chunk has): the cores are busy, and a second job would
      add switches, not speed. One job on the pool writes the block, then
      hashes it, and the next block waits for it.

    With ``fsync``, the writeback of a block handed off starts as soon as it is
    written (sync_file_range), so the fdatasync at ``close()`` only waits for
    the tail. Small blocks, and the block that fills the chunk's announced
    length, are written and hashed on this thread once every block before them
    is done: there is no next block to receive meanwhile, so a hand-off would
    only add its wake-ups to the request (a 256 KiB or 1 MiB chunk is one
    block; its write beside its hash measured nothing either).
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
        self._alone: bool | None = None  # chosen at the first block handed off
        # the jobs of each block handed off and not yet waited for, oldest first
        self._pending: collections.deque[list[Future[None | _Failed]]] = collections.deque()

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
        # A small block, or the one that fills the chunk's announced length, stays on this
        # thread: no next block to receive meanwhile, so a hand-off would only add its wake-ups.
        handed_off = len(data) >= OVERLAP_MIN_BLOCK and self.written + len(data) != self.limit
        if handed_off and self._alone is None:
            self._alone = not _on_pool
        # Blocks reach the file and the hash in order: only a chunk whose hashes queue in the
        # lane may leave its last block in flight while it hands off the next.
        self._wait_pending(keep=1 if handed_off and self._alone else 0)
        position, self.position = self.position, self.position + len(data)
        if not handed_off:
            self._store(data, position, False)
        elif self._alone:
            _on_pool.add(self)
            self._pending.append(
                [
                    _submit(self._write_block, data, position, self.fsync),
                    _queue(self.on_block, data),
                ]
            )
        else:
            _on_pool.add(self)
            self._pending.append([_submit(self._store, data, position, self.fsync)])

    def _store(self, data: bytes, position: int, start_writeback: bool) -> None:
        """Write a block at ``position``, then hash it."""
        self._write_block(data, position, start_writeback)
        self.on_block(data)

    def _write_block(self, data: bytes, position: int, start_writeback: bool) -> None:
        """Write ``data`` at ``position``; with ``start_writeback``, start the block's writeback
        (it goes on meanwhile)."""
        view = memoryview(data)
        try:
            while view:
                n = os.pwrite(self.fd, view, position)
                view = view[n:]
                position += n
            if start_writeback and _sync_file_range is not None:
                _sync_file_range(self.fd, position - len(data), len(data))
        except OSError as e:
            raise StorageError(f"Cannot write the chunk: {e.strerror}.") from e

    def _wait_pending(self, keep: int = 0) -> None:
        """Wait, oldest first, until at most ``keep`` blocks handed off are in flight. A block's
        first error is raised once all its jobs are over; later blocks stay listed. A job leaves
        the list only when it is over, so that ``close()`` never closes the file under one still
        running (an interrupted wait leaves the rest listed). (Not through
        ``Future.exception()``: gevent's raises the job's error instead of returning it.)"""
        while len(self._pending) > keep:
            jobs = self._pending[0]
            error: Exception | None = None
            while jobs:
                try:
                    _outcome(jobs[0])
                except Exception as e:
                    error = error or e
                del jobs[0]
            self._pending.popleft()
            if not self._pending:
                _on_pool.discard(self)
            if error is not None:
                raise error

    def close(self, *, sync: bool = True) -> None:
        try:
            self._wait_pending()
            if sync and self.fsync and self.written:
                _off_hub(os.fdatasync, self.fd)
        except OSError as e:
            raise StorageError(f"Cannot flush the chunk: {e.strerror}.") from e
        finally:
            try:
                for jobs in self._pending:  # interrupted: let the helpers finish with the blocks
                    for job in jobs:
                        try:
                            _outcome(job)
                        except Exception:  # the error that brought us here is the one to report
                            pass
            finally:
                _on_pool.discard(self)
                os.close(self.fd)  # always: a leaked descriptor keeps a deleted file's space
