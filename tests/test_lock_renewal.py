"""A writer that stalls between blocks: it keeps its lock while it stalls for less
than the lock timeout, and loses it, writing nothing more, when it stalls longer.

docs/correctness.md ("A stalled writer"): the writer renews its lock every third of
CHUNKY_REDIS_LOCK_TIMEOUT while it writes and stops writing the moment the
renewal fails. The lock timeouts here are a few hundred milliseconds; every
stall keeps a margin of at least 150 ms from the timeout, for a loaded machine.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from chunky_redis import exceptions as exc
from chunky_redis.core.http import ByteRange
from chunky_redis.core.uploads import UploadService
from chunky_redis.runtime import get_service

TOTAL = 1000
FIRST = 100


def new_upload(service: UploadService, data: bytes) -> str:
    session = service.start_chunk(
        owner="",
        upload_id=None,
        byte_range=ByteRange(0, FIRST - 1, TOTAL),
        length=FIRST,
        max_bytes=None,
    )
    session.write(data[:FIRST])
    return session.finish().upload_id


def start(service: UploadService, upload_id: str, first: int, last: int):
    return service.start_chunk(
        owner="",
        upload_id=upload_id,
        byte_range=ByteRange(first, last, TOTAL),
        length=last - first + 1,
        max_bytes=None,
    )


def test_a_writer_that_stalls_less_than_the_timeout_keeps_its_lock(chunky):
    chunky.CHUNKY_REDIS_LOCK_TIMEOUT = 0.6  # renewed after 0.2 s; lapses after 0.6 s unrenewed
    service = get_service()
    data = os.urandom(TOTAL)
    upload_id = new_upload(service, data)
    blocks = 6
    session = start(service, upload_id, FIRST, FIRST + blocks * 100 - 1)
    started = time.monotonic()
    for index in range(blocks):
        time.sleep(0.3)  # a third of the timeout has passed: this block renews the lock
        session.write(data[FIRST + index * 100 : FIRST + (index + 1) * 100])
        # Whoever comes now, well after the first lock would have lapsed, is refused.
        with pytest.raises(exc.UploadLocked) as refused:
            start(service, upload_id, FIRST, FIRST + 99)
        assert refused.value.code == "locked"
    assert time.monotonic() - started > 3 * 0.6  # the writer outlived its first lock thrice
    upload = session.finish()
    assert upload.offset == FIRST + blocks * 100
    stored = (Path(chunky.CHUNKY_REDIS_UPLOAD_DIR) / f"{upload_id}.part").read_bytes()
    assert stored == data[: upload.offset]


def test_a_writer_that_stalls_past_the_timeout_stops_before_its_next_byte(chunky):
    chunky.CHUNKY_REDIS_LOCK_TIMEOUT = 0.2
    service = get_service()
    data = os.urandom(TOTAL)
    upload_id = new_upload(service, data)
    stalled = start(service, upload_id, FIRST, FIRST + 199)
    stale = os.urandom(200)  # what the stalled client carries: not what the file ends up with
    stalled.write(stale[:100])
    time.sleep(0.45)  # the lock lapses meanwhile

    # Another request takes the upload over and records the same range.
    taker = start(service, upload_id, FIRST, FIRST + 199)
    taker.write(data[FIRST : FIRST + 200])
    assert taker.finish().offset == FIRST + 200

    # The stalled writer wakes up: its renewal fails and nothing more reaches the file.
    with pytest.raises(exc.LockLost):
        stalled.write(stale[100:])
    stalled.abort()
    path = Path(chunky.CHUNKY_REDIS_UPLOAD_DIR) / f"{upload_id}.part"
    assert path.read_bytes() == data[: FIRST + 200]
    assert service.status(owner="", upload_id=upload_id).offset == FIRST + 200


def test_a_writer_whose_lock_lapsed_unclaimed_stops_too(chunky):
    """Nobody took the upload over, yet the lock lapsed: the writer still stops (it cannot
    know whether a taker has come and gone), and the upload stays where it was."""
    chunky.CHUNKY_REDIS_LOCK_TIMEOUT = 0.2
    service = get_service()
    data = os.urandom(TOTAL)
    upload_id = new_upload(service, data)
    stalled = start(service, upload_id, FIRST, FIRST + 199)
    stalled.write(data[FIRST : FIRST + 100])
    time.sleep(0.45)
    path = Path(chunky.CHUNKY_REDIS_UPLOAD_DIR) / f"{upload_id}.part"
    size_before = path.stat().st_size
    with pytest.raises(exc.LockLost):
        stalled.write(data[FIRST + 100 : FIRST + 200])
    stalled.abort()
    assert path.stat().st_size == size_before  # not one byte of the second block
    assert service.status(owner="", upload_id=upload_id).offset == FIRST
