"""bench/body_read.py reads real bodies through both paths and refuses to report a reader that
returned other bytes than those sent."""

from __future__ import annotations

import os

import pytest

from bench import body_read
from chunky_redis.protocols import socket_body


@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("hash_between", [False, True])
def test_both_paths_read_exactly_what_was_sent(direct, hash_between):
    cpu, same = body_read.read_once(3 << 20, 256 << 10, direct, os.urandom(1 << 20), hash_between)
    assert same
    assert cpu > 0


def test_a_reader_that_returns_other_bytes_is_caught(monkeypatch):
    real = socket_body._GunicornBody.read

    def corrupting(self, size):
        data = real(self, size)
        return data[:-1] + bytes([data[-1] ^ 1]) if data else data  # its last byte flipped

    monkeypatch.setattr(socket_body._GunicornBody, "read", corrupting)
    with pytest.raises(SystemExit, match="socket_body read bytes that differ"):
        body_read.main(["--size-mib", "1", "--rounds", "1"])
