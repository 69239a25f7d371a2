"""bench/ab.py's bookkeeping: every server takes every place equally often, and the ratios are
taken round by round. No server is started."""

from __future__ import annotations

import collections

import pytest

from bench.ab import rotation, summary


@pytest.mark.parametrize("servers", [["a", "b"], ["a", "b", "c"]])
def test_every_server_takes_every_place_equally_often(servers):
    places = collections.Counter()
    for r in range(2 * len(servers)):
        order = rotation(servers, r)
        assert sorted(order) == sorted(servers)
        places.update((name, i) for i, name in enumerate(order))
    assert set(places.values()) == {2}
    assert len(places) == len(servers) ** 2


def test_ratios_are_per_round_to_the_first_server():
    rows = summary({"a": [100.0, 50.0, 80.0], "b": [110.0, 40.0, 80.0]}, "a")
    by = {row["server"]: row for row in rows}
    assert by["a"]["ratio"] == 1.0
    assert by["b"]["mb_s"] == 80.0
    assert (by["b"]["ratio"], by["b"]["lowest"], by["b"]["highest"]) == (1.0, 0.8, 1.1)


def test_rounds_missing_for_one_server_are_an_error():
    with pytest.raises(ValueError):
        summary({"a": [1.0, 2.0], "b": [1.0]}, "a")
