"""Reading a Prometheus scrape: the samples of chunky_redis's metrics, by name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when the scrape has none: a counter never counted)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def family_names(text: str) -> set[str]:
    """Every metric name a query may use: families and their samples' names (a labelled
    counter nothing counted yet has no sample, but its family says what its name will be)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names
