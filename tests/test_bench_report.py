"""bench/report.py's paired rows (bench.metrics_cost and bench.wait_cost): medians per
configuration, their ratio, and latency before -> after. No server is started."""

from __future__ import annotations

from bench.report import paired_rows


def test_paired_rows_take_medians_and_the_ratio_of_the_second_to_the_first():
    results = {"w": {"a": [(100.0, 2.0), (300.0, 9.0), (110.0, 2.2)], "b": [(99.0, 2.1)]}}
    (row,) = paired_rows(results, "a", "b", lambda name: "MB/s", digits=2)
    assert row == "| w | 110.0 MB/s | 99.0 MB/s | 0.90 | 2.20 -> 2.10 ms |"
