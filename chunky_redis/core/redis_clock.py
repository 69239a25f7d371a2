"""What a process knows of Redis's clock, for deadlines that Redis itself checks.

No Django here. A lock request carries the moment after which its sender has
given up, and the script compares it with Redis's ``TIME``; hosts' clocks may
disagree with Redis's, so each reply carries Redis's time and teaches the
caller the offset. Only quick replies are trusted: the estimate is then exact
to half their round trip.
"""

from __future__ import annotations

import weakref
from typing import Any

from .redis_clients import AnyRedis

# Replies slower than this teach nothing about the offset between clocks.
SAMPLE_MAX_RTT_MS = 100
# Per connection pool (one per Redis server and process): Redis's clock minus ours, in ms.
_offsets: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _pool(redis: AnyRedis) -> Any:
    # A cluster client has a pool per node: its nodes manager (which holds the connection
    # options) stands for the cluster, whose nodes' clocks are taken to agree.
    return getattr(redis, "connection_pool", None) or getattr(redis, "nodes_manager", None)


def offset(redis: AnyRedis) -> int:
    """Redis's clock minus ours (ms), as last learned; 0 before the first reply."""
    pool = _pool(redis)
    return _offsets.get(pool, 0) if pool is not None else 0


def learn(redis: AnyRedis, sent_ms: int, received_ms: int, redis_ms: int) -> bool:
    """Learn from a reply stamped ``redis_ms``; True when what we knew was off by more
    than a quick reply's error (a deadline computed with it may have been wrong)."""
    pool = _pool(redis)
    if pool is None or received_ms - sent_ms > SAMPLE_MAX_RTT_MS:
        return False
    learned = redis_ms - (sent_ms + received_ms) // 2
    was_off = abs(learned - _offsets.get(pool, 0)) > SAMPLE_MAX_RTT_MS
    _offsets[pool] = learned
    return was_off


def lock_budget(redis: AnyRedis, configured_ms: int | None) -> int | None:
    """How long after it is sent a lock request may still take the lock (ms).

    Never longer than the client's socket timeout: past it the caller has given
    up on the answer and would never release a lock taken for it.
    """
    # (A default of None in place of {} is an equivalent mutant: `or {}` takes either.)
    kwargs = getattr(_pool(redis), "connection_kwargs", {}) or {}
    socket_timeout = kwargs.get("socket_timeout")
    budgets = [b for b in (configured_ms, socket_timeout and int(socket_timeout * 1000)) if b]
    return min(budgets) if budgets else None
