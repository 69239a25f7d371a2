"""The tus workload's arithmetic (bench/tus_dialect.py): ratios taken within a round, then their
median, lowest and highest; failed legs left out of both. No server is started."""

from __future__ import annotations

import pytest

from bench import tus_dialect

MiB = 1 << 20


def rec(leg: str, rnd: int, mb_s: float | None, chunk: int = 8 * MiB) -> dict:
    out = {"size": 64 * MiB, "chunk": chunk, "leg": leg, "round": rnd}
    if mb_s is None:
        out["error"] = "HTTPError: boom"
    else:
        out.update(mb_s=mb_s, chunk_ms=1.0, seconds=1.0)
    return out


def test_ratios_are_per_round_then_median_lowest_highest():
    records = [
        rec("chunky", 0, 100), rec("tus", 0, 90), rec("anchor", 0, 60),
        rec("chunky", 1, 50), rec("tus", 1, 55), rec("anchor", 1, 100),
        rec("chunky", 2, 80), rec("tus", 2, 80), rec("anchor", 2, 40),
    ]  # fmt: skip
    (entry,) = tus_dialect.summary(records)
    # Medians of the MB/s would give 80 / 80 = 1.0 and 80 / 60; the ratios are taken per round.
    assert entry["ratios"]["tus / chunky"] == pytest.approx(
        {"median": 1.0, "min": 0.9, "max": 1.1, "rounds": 3, "met": True}
    )
    assert entry["ratios"]["tus / @tus/server"] == pytest.approx(
        {"median": 1.5, "min": 0.55, "max": 2.0, "rounds": 3, "met": True}
    )
    assert entry["legs"]["tus"]["mb_s"] == 80
    assert "tus, CHUNKY_FSYNC=0 / @tus/server" not in entry["ratios"]  # that leg did not run


def test_a_failed_leg_drops_its_round_from_the_ratio_and_is_reported():
    records = [
        rec("chunky", 0, 100), rec("tus", 0, 90), rec("anchor", 0, 100),
        rec("chunky", 1, 100), rec("tus", 1, None), rec("anchor", 1, 100),
    ]  # fmt: skip
    (entry,) = tus_dialect.summary(records)
    ratio = entry["ratios"]["tus / chunky"]
    assert (ratio["median"], ratio["rounds"], ratio["met"]) == (pytest.approx(0.9), 1, False)
    assert entry["legs"]["tus"]["runs"] == 1
    assert entry["legs"]["tus"]["errors"] == ["HTTPError: boom"]
    assert "| error |" not in tus_dialect.table(records)  # one good run still gives a figure


def test_the_table_has_a_row_per_size_and_the_nofsync_columns_only_when_measured():
    records = [rec(leg, 0, 100) for leg in ("chunky", "tus", "anchor")]
    records += [rec(leg, 0, 50, chunk=64 << 10) for leg in ("chunky", "tus", "anchor")]
    text = tus_dialect.table(records)
    assert "| 64 MiB in 8 MiB chunks |" in text and "| 64 MiB in 64 KiB chunks |" in text
    assert "FSYNC=0" not in text.split("\n", 2)[2]
    text = tus_dialect.table(records + [rec("tus-nofsync", 0, 120)])
    assert text.count("CHUNKY_FSYNC=0") == 2  # its leg and its ratio
    assert "1.20 [1.20, 1.20] |" in text


def test_the_bench_hands_out_a_port_per_server_without_a_port_range(monkeypatch):
    """`make bench` starts several servers: without CHUNKY_TEST_PORTS each asks the kernel anew."""
    from bench import servers

    monkeypatch.delenv("CHUNKY_TEST_PORTS", raising=False)
    ports = {servers.free_port() for _ in range(3)}
    assert len(ports) == 3 and 0 not in ports
