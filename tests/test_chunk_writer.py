"""The chunk writer on its own: large blocks go to the file and the hash on the helper pool (as two
jobs side by side when no other chunk has a block there), one block at a time and in order; an
error there reaches the request, and the file stays open until every job is done with it."""

from __future__ import annotations

import gc
import hashlib
import os
import threading
import time

import pytest

from chunky_redis.core import filesystem
from chunky_redis.core.errors import LengthMismatch, StorageError
from chunky_redis.core.filesystem import OVERLAP_MIN_BLOCK, FileSystemChunkStorage


@pytest.fixture(params=["native", "gevent"])
def pool(request, monkeypatch):
    """The helper pool as under gthread, and gevent's native-thread pool as under its worker
    (whose futures behave differently: their exception() raises the job's error)."""
    if request.param == "gevent":
        from gevent.threadpool import ThreadPoolExecutor

        executor, lane = ThreadPoolExecutor(max_workers=2), ThreadPoolExecutor(max_workers=1)
        monkeypatch.setattr(filesystem, "_hash_pool", lambda: executor)
        monkeypatch.setattr(filesystem, "_hash_lane", lambda: lane)
        yield request.param
        executor.shutdown()
        lane.shutdown()
    else:
        yield request.param


def _writer(tmp_path, on_block, *, limit=None):
    storage = FileSystemChunkStorage(str(tmp_path), fsync=True)
    return storage, storage.writer(
        "u1",
        create=True,
        start=0,
        limit=limit,
        on_block=on_block,
        overflow=lambda: LengthMismatch(limit, None, "too long"),
    )


@pytest.mark.parametrize("sizes", [[OVERLAP_MIN_BLOCK] * 3, [100, OVERLAP_MIN_BLOCK + 7, 3, 5000]])
def test_blocks_reach_the_file_and_the_hash_in_order(tmp_path, sizes, pool):
    blocks = [os.urandom(n) for n in sizes]
    md5 = hashlib.md5()
    fed: list[int] = []
    calls = iter(range(len(sizes)))

    def on_block(data: bytes) -> None:
        if next(calls) == 0:
            time.sleep(0.05)  # a slow first hash: the next block must still wait for it
        fed.append(len(data))
        md5.update(data)

    storage, writer = _writer(tmp_path, on_block)
    for block in blocks:
        writer.write(block)
    writer.close()
    assert fed == sizes
    assert writer.written == sum(sizes)
    whole = b"".join(blocks)
    assert md5.hexdigest() == hashlib.md5(whole).hexdigest()
    with open(storage.path("u1"), "rb") as f:
        assert f.read() == whole


@pytest.mark.parametrize("second", ["write", "close"])
def test_a_failed_write_on_the_helper_reaches_the_request(
    tmp_path, monkeypatch, capfd, pool, second
):
    """At the next write or at close(); either way the file is closed (a leaked descriptor of a
    deleted chunk file kept a full disk full), and the pool prints nothing (gevent's printed each
    failed job's traceback on stderr, twice)."""
    storage, writer = _writer(tmp_path, lambda data: None)
    real_pwrite = os.pwrite

    def full_disk(fd, data, offset):
        if offset >= OVERLAP_MIN_BLOCK:
            raise OSError(28, "No space left on device")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(filesystem.os, "pwrite", full_disk)
    writer.write(b"a" * OVERLAP_MIN_BLOCK)
    writer.write(b"b" * OVERLAP_MIN_BLOCK)  # fails on the helper, after this returns
    with pytest.raises(StorageError, match="No space left"):
        if second == "write":
            writer.write(b"c" * 10)
        else:
            writer.close()
    if second == "write":
        writer.close(sync=False)  # as the session's abort does
    with pytest.raises(OSError):
        os.fstat(writer.fd)  # closed all the same
    assert "Traceback" not in capfd.readouterr().err


def test_close_waits_for_the_block_still_being_written(tmp_path):
    """An aborted chunk closes its file: never under a helper still writing to it."""
    started, release = threading.Event(), threading.Event()

    def slow_hash(data: bytes) -> None:
        started.set()
        release.wait(5)

    storage, writer = _writer(tmp_path, slow_hash)
    writer.write(b"c" * OVERLAP_MIN_BLOCK)
    assert started.wait(5)
    closer = threading.Thread(target=writer.close, kwargs={"sync": False})
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # still waiting for the helper
    os.fstat(writer.fd)  # and the file is still open
    release.set()
    closer.join(5)
    assert not closer.is_alive()
    assert os.path.getsize(storage.path("u1")) == OVERLAP_MIN_BLOCK


def test_a_block_handed_off_is_written_and_hashed_side_by_side(tmp_path, monkeypatch, pool):
    """Its write and its hash run at once: the md5 of one stream cannot be split, so the write
    must not wait for it, nor it for the write. Here the block's write cannot end before its
    hash has begun; done one after the other, it never would."""
    hash_began = threading.Event()
    real_pwrite = os.pwrite

    def pwrite(fd, data, offset):
        if offset == 0 and not hash_began.wait(5):
            raise OSError(5, "the hash did not begin while the block was being written")
        return real_pwrite(fd, data, offset)

    def on_block(data: bytes) -> None:
        hash_began.set()

    monkeypatch.setattr(filesystem.os, "pwrite", pwrite)
    storage, writer = _writer(tmp_path, on_block)
    blocks = [b"h" * OVERLAP_MIN_BLOCK, b"i" * 10]
    for block in blocks:
        writer.write(block)
    writer.close()
    with open(storage.path("u1"), "rb") as f:
        assert f.read() == b"".join(blocks)


def test_a_failed_write_waits_for_the_hash_of_its_block(tmp_path, monkeypatch, pool):
    """Both jobs are over before the error is raised and the file is closed: the write's
    error comes first, while the hash of the same block is still running."""
    hashed = threading.Event()

    def slow_hash(data: bytes) -> None:
        time.sleep(0.2)
        hashed.set()

    def full_disk(fd, data, offset):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(filesystem.os, "pwrite", full_disk)
    storage, writer = _writer(tmp_path, slow_hash)
    writer.write(b"j" * OVERLAP_MIN_BLOCK)
    with pytest.raises(StorageError, match="No space left"):
        writer.close()
    assert hashed.is_set()
    with pytest.raises(OSError):
        os.fstat(writer.fd)  # closed, once the hash was over


def test_a_block_over_the_limit_is_refused_before_any_byte_of_it(tmp_path):
    storage, writer = _writer(tmp_path, lambda data: None, limit=OVERLAP_MIN_BLOCK + 1)
    writer.write(b"d" * OVERLAP_MIN_BLOCK)
    with pytest.raises(LengthMismatch):
        writer.write(b"e" * 2)
    writer.close(sync=False)
    assert os.path.getsize(storage.path("u1")) == OVERLAP_MIN_BLOCK


@pytest.mark.parametrize("limit", [None, 2 * OVERLAP_MIN_BLOCK])
def test_one_sync_after_the_last_write(tmp_path, monkeypatch, limit, pool):
    """The fdatasync must cover every byte, once: at close(), after the last block's write."""
    storage, writer = _writer(tmp_path, lambda data: None, limit=limit)
    real_pwrite, real_sync = os.pwrite, os.fdatasync
    size_at_sync: list[int] = []

    def slow_pwrite(fd, data, offset):
        time.sleep(0.1)
        return real_pwrite(fd, data, offset)

    def sync(fd):
        size_at_sync.append(os.fstat(fd).st_size)
        real_sync(fd)

    monkeypatch.setattr(filesystem.os, "pwrite", slow_pwrite)
    monkeypatch.setattr(filesystem.os, "fdatasync", sync)
    writer.write(b"f" * OVERLAP_MIN_BLOCK)
    writer.write(b"g" * OVERLAP_MIN_BLOCK)
    writer.close()
    assert size_at_sync == [2 * OVERLAP_MIN_BLOCK]


# a block's write on the pool, its hash in the lane, or both in one job on the pool
W, H, S = "pool _write_block", "lane update", "pool _store"


def _spy(monkeypatch, handed: list[str]) -> None:
    """Record each job handed off, as "pool NAME" or "lane NAME"."""
    for where, name in (("pool", "_submit"), ("lane", "_queue")):
        real = getattr(filesystem, name)

        def job(func, data, *args, real=real, where=where):
            assert len(data) >= OVERLAP_MIN_BLOCK
            handed.append(f"{where} {func.__name__}")
            return real(func, data, *args)

        monkeypatch.setattr(filesystem, name, job)


def _busy_writer(tmp_path):
    """Another upload's writer, with a block on the pool until it goes on."""
    other = FileSystemChunkStorage(str(tmp_path / "other"), fsync=False).writer(
        "u2", create=True, start=0, limit=None, on_block=lambda data: None, overflow=None
    )
    other.write(b"o" * OVERLAP_MIN_BLOCK)
    return other


@pytest.mark.parametrize(
    ("limit", "blocks", "alone", "busy"),
    [
        # a one-block chunk (256 KiB, 1 MiB): nothing to overlap, no hand-off at all
        (OVERLAP_MIN_BLOCK, 1, [], []),
        # the block that completes the chunk stays on the request's thread
        (2 * OVERLAP_MIN_BLOCK, 2, [W, H], [S]),
        # no announced length: any block may have more after it
        (None, 2, [W, H, W, H], [S, S]),
    ],
)
@pytest.mark.parametrize("others", ["alone", "busy"])
def test_what_goes_to_the_pool(tmp_path, monkeypatch, limit, blocks, alone, busy, others):
    """A writer alone on the pool splits a block into a write on the pool and a hash in the
    lane; with another chunk's block there, one job does both. The last block stays on the
    request's thread, where a hand-off would only add its wake-ups (docs/performance.md)."""
    handed: list[str] = []
    _spy(monkeypatch, handed)
    if others == "busy":
        other = _busy_writer(tmp_path)
        handed.clear()
    md5 = hashlib.md5()
    storage, writer = _writer(tmp_path, md5.update, limit=limit)
    data = [os.urandom(OVERLAP_MIN_BLOCK) for _ in range(blocks)]
    for block in data:
        writer.write(block)
    writer.close()
    if others == "busy":
        other.close()
    assert handed == (alone if others == "alone" else busy)
    assert md5.hexdigest() == hashlib.md5(b"".join(data)).hexdigest()
    with open(storage.path("u1"), "rb") as f:
        assert f.read() == b"".join(data)
    assert not filesystem._on_pool  # every writer left the pool at close()


def test_a_writer_dropped_without_closing_leaves_the_pool(tmp_path):
    storage, writer = _writer(tmp_path, lambda data: None)
    writer.write(b"p" * OVERLAP_MIN_BLOCK)
    assert writer in filesystem._on_pool
    for jobs in writer._pending:  # over, but never waited for by the writer
        for job in jobs:
            job.result()
    fd = writer.fd
    del writer
    gc.collect()
    os.close(fd)
    assert not filesystem._on_pool


def test_a_writer_leaves_the_pool_once_its_block_is_done(tmp_path, pool):
    """Between blocks, while it receives the next one, a writer no longer counts as busy."""
    storage, writer = _writer(tmp_path, lambda data: None)
    writer.write(b"q" * OVERLAP_MIN_BLOCK)
    assert writer in filesystem._on_pool
    writer.write(b"r")  # waits for the block's jobs
    assert writer not in filesystem._on_pool
    writer.close()


def test_a_chunk_keeps_the_way_it_chose_at_its_first_block(tmp_path, monkeypatch):
    """Alone at its first block, a chunk keeps the lane when another one comes: its earlier
    blocks' hashes are queued there, and a hash on the pool could overtake them."""
    handed: list[str] = []
    _spy(monkeypatch, handed)
    md5 = hashlib.md5()
    storage, writer = _writer(tmp_path, md5.update)
    blocks = [os.urandom(OVERLAP_MIN_BLOCK) for _ in range(3)]
    writer.write(blocks[0])
    other = _busy_writer(tmp_path)
    for block in blocks[1:]:
        writer.write(block)
    other.close()
    writer.close()
    assert handed == [W, H, S, W, H, W, H]
    assert md5.hexdigest() == hashlib.md5(b"".join(blocks)).hexdigest()


def test_the_next_block_is_queued_while_the_last_one_is_hashed(tmp_path, monkeypatch, pool):
    """Alone, two blocks may be in flight: the second block's hash is queued before the first
    one's has ended, so the lane goes on without waiting for the request to hand it over. The
    third block waits until the first one is done: no more than two."""
    queued = []
    real_queue = filesystem._queue
    first_may_end = threading.Event()
    hashed: list[int] = []

    def queue(func, data, *args):
        queued.append(data[:1])
        if len(queued) == 3:
            assert hashed[:1] == [0]  # the first block is done before the third is handed off
        if len(queued) == 2:
            first_may_end.set()
        return real_queue(func, data, *args)

    def on_block(data: bytes) -> None:
        if data[:1] == b"0" and not first_may_end.wait(5):
            raise RuntimeError("the second block was not handed off while the first was hashed")
        hashed.append(int(data[:1]))

    monkeypatch.setattr(filesystem, "_queue", queue)
    storage, writer = _writer(tmp_path, on_block)
    for i in range(3):
        writer.write(str(i).encode() * OVERLAP_MIN_BLOCK)
    writer.close()
    assert queued == [b"0", b"1", b"2"]
    assert hashed == [0, 1, 2]
