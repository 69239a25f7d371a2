"""The chunk writer on its own: large blocks with more of the chunk to come go to the file and the
hash on a helper thread, one at a time, in order; an error there reaches the request, and the file
stays open until the helper is done with it."""

from __future__ import annotations

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

        executor = ThreadPoolExecutor(max_workers=2)
        monkeypatch.setattr(filesystem, "_hash_pool", lambda: executor)
        yield request.param
        executor.shutdown()
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


@pytest.mark.parametrize(
    ("limit", "blocks", "handed_off"),
    [
        (OVERLAP_MIN_BLOCK, 1, 0),  # a one-block chunk (256 KiB, 1 MiB): no hand-off at all
        (2 * OVERLAP_MIN_BLOCK, 2, 1),  # the block that completes the chunk stays inline
        (None, 2, 2),  # no announced length: any block may have more after it
    ],
)
def test_only_a_large_block_with_more_to_come_goes_to_the_helper(
    tmp_path, monkeypatch, limit, blocks, handed_off
):
    """A hand-off pays only while the request receives the next block meanwhile; for the last
    one it would only add its wake-ups (docs/performance.md)."""
    handed: list[int] = []
    real_submit = filesystem._submit

    def submit(func, data, *args):
        handed.append(len(data))
        return real_submit(func, data, *args)

    monkeypatch.setattr(filesystem, "_submit", submit)
    md5 = hashlib.md5()
    storage, writer = _writer(tmp_path, md5.update, limit=limit)
    data = [os.urandom(OVERLAP_MIN_BLOCK) for _ in range(blocks)]
    for block in data:
        writer.write(block)
    writer.close()
    assert handed == [OVERLAP_MIN_BLOCK] * handed_off
    assert md5.hexdigest() == hashlib.md5(b"".join(data)).hexdigest()
    with open(storage.path("u1"), "rb") as f:
        assert f.read() == b"".join(data)
