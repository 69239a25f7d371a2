"""The capacity calculator (bench/capacity.py): its arithmetic, by hand-computed examples."""

from __future__ import annotations

import argparse
import json

import pytest

from bench import capacity
from bench.capacity import Calibration, Target, parse_size, plan

K = Calibration(
    request_cpu_s=0.002,
    byte_cpu_s=1e-9,  # 1 ms per MB
    nginx_byte_cpu_s=1e-10,
    redis_cpu_s_per_chunk=100e-6,
    chunk_round_trips=2,
    completion_round_trips=10,
    first_chunk_round_trips=3,
    completion_worker_s=0.02,
    md5_bytes_per_s=500e6,
)


def target(**kw) -> Target:
    values = dict(
        concurrent_uploads=10_000,
        ingress_bytes_per_s=1e9,
        chunk_size=10_000_000,
        file_size=1_000_000_000,
        utilisation=0.5,
    )
    return Target(**{**values, **kw})


def test_plan_large_chunks() -> None:
    p = plan(target(), K)
    assert p.chunks_per_s == pytest.approx(100)
    assert p.completions_per_s == pytest.approx(1)
    # 100 x (2 ms + 10 ms) = 1.2 cores of CPU, at 50 %: 2.4
    assert p.web_cores == pytest.approx(2.4)
    # ... but 10,000 uploads at <= 4,000 connections each need 3 processes
    assert p.web_processes == 3
    assert p.nginx_cores == pytest.approx(0.2)
    # 99 later chunks x 2 + 1 first chunk x 3 + 1 completion x 10 round trips, at 50 us each
    assert p.redis_round_trips_per_s == pytest.approx(211)
    assert p.redis_cpu == pytest.approx(211 * 50e-6)
    assert p.redis_shards == 1
    assert p.celery_workers == 1
    assert p.fsyncs_per_s == pytest.approx(100)
    assert p.volume_write_bytes_per_s == 1e9 and p.volume_read_bytes_per_s == 0
    assert p.per_upload_bytes_per_s == pytest.approx(1e5)


def test_plan_cpu_bound_web() -> None:
    p = plan(target(concurrent_uploads=100, ingress_bytes_per_s=4e9), K)
    # 400 chunks/s x 12 ms = 4.8 cores, at 50 %: 9.6 -> 10 processes (connections need 1)
    assert p.web_cores == pytest.approx(9.6)
    assert p.web_processes == 10


def test_plan_small_chunks_need_shards() -> None:
    p = plan(target(chunk_size=65536), K)
    chunks = 1e9 / 65536
    assert p.redis_cpu == pytest.approx(((chunks - 1) * 2 + 3 + 10) * 50e-6)
    assert p.redis_shards == 4  # 1.53 cores of Redis at 50 % per shard
    assert capacity.shard_chunks_per_s(target(), K) == pytest.approx(5000)


def test_plan_verifying_stored_bytes_rereads_every_file() -> None:
    p = plan(target(verify_stored_bytes=True), K)
    # 1 completion/s x (20 ms + 1 GB at 500 MB/s) / 50 % = 4.04 workers
    assert p.celery_workers == 5
    assert p.volume_read_bytes_per_s == 1e9


def test_parse_size() -> None:
    assert parse_size("8M") == 8 << 20
    assert parse_size("64KiB") == 64 << 10
    assert parse_size("1G") == 1 << 30
    assert parse_size("1000") == 1000
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("0")


def test_the_cli_reads_the_committed_calibration(capsys) -> None:
    """bench/results/ holds what the measurements wrote; the calculator must still read it."""
    args = ["--concurrent-uploads", "10000", "--ingress-gbit", "10", "--chunk-size", "8M"]
    assert capacity.main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["plan"]["chunks_per_s"] == pytest.approx(10e9 / 8 / (8 << 20))
    assert out["plan"]["web_processes"] >= 10
    assert capacity.main(args) == 0
    assert "assumptions" in capsys.readouterr().out
