import hashlib
import os

import pytest

from chunky_redis.core.checksums import (
    ALGORITHMS,
    ResumableHash,
    file_hexdigest,
    incremental_available,
)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_state_survives_a_round_trip_through_bytes(algorithm):
    assert incremental_available(algorithm)
    parts = [os.urandom(n) for n in (1, 63, 64, 65, 1000, 1 << 16)]
    h = ResumableHash(algorithm)
    for part in parts:
        state = h.serialize()
        assert isinstance(state, bytes)
        h = ResumableHash(algorithm, state)  # as if another worker took the next chunk
        h.update(part)
    assert h.hexdigest() == hashlib.new(algorithm, b"".join(parts)).hexdigest()


def test_hexdigest_does_not_finish_the_state():
    h = ResumableHash("md5")
    h.update(b"abc")
    assert h.hexdigest() == hashlib.md5(b"abc").hexdigest()
    h.update(b"def")
    assert h.hexdigest() == hashlib.md5(b"abcdef").hexdigest()


def test_accepts_bytearray_and_memoryview():
    h = ResumableHash("sha256")
    h.update(bytearray(b"ab"))
    h.update(memoryview(b"cd"))
    h.update(memoryview(bytearray(b"xef"))[1:])
    assert h.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


def test_a_state_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError):
        ResumableHash("md5", b"\0" * 10)


def test_unknown_algorithm_is_not_available():
    assert not incremental_available("whirlpool")


def test_file_hexdigest_reads_only_the_prefix(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789" * 1000 + b"garbage")
    assert (
        file_hexdigest(str(path), "md5", 10_000, block=777)
        == hashlib.md5(b"0123456789" * 1000).hexdigest()
    )
    assert file_hexdigest(str(path), "sha1") == hashlib.sha1(path.read_bytes()).hexdigest()
