"""pytest plugin: keep only the fast in-process tests (fakeredis, no server or worker
processes, no real Redis). `make mutate` runs mutmut with it (-p tests.support.unit_only),
so that each mutant is judged in seconds and never touches shared services.
"""

from __future__ import annotations

import inspect

import pytest

# Parameters that mean a real service: the real Redis, a Redis Cluster or Sentinel, a live server.
_REAL = {"redis", "cluster", "sentinel", "live"}
# Names in a test's own source that mean it starts processes.
_PROCESSES = ("SiteProcess", "WorkerProcess", "live_env", "redis-server", "REAL_REDIS_URL")


def _needs_services(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and _REAL & {str(v) for v in callspec.params.values()}:
        return True
    if any(item.get_closest_marker(m) for m in ("live", "slow", "browser", "fault")):
        return True
    function = getattr(item, "function", None)
    try:
        source = inspect.getsource(function) if function else ""
    except (OSError, TypeError):
        source = ""
    return any(name in source for name in _PROCESSES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept, dropped = [], []
    for item in items:
        (dropped if _needs_services(item) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
