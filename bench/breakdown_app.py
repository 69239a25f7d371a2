"""The bundled site with timers around the parts of a chunk request (for ``python -m bench breakdown``).

Nothing of this is in chunky_redis: the timers are wrapped around its functions here, in the
benchmark's own WSGI module, so the service as deployed pays nothing for them. One gunicorn
worker, one client at a time: the totals between two reads of ``/__breakdown__`` belong to the
chunk requests of that stretch. Each part is wall time where it runs:

- read: the body from gunicorn, socket included: ``socket_body``'s reader under gunicorn, and
  ``request.read()`` where that does not apply;
- hash: ``ResumableHash.update`` (the checksum state);
- write: ``ChunkWriter._write_block`` (pwrite, sync_file_range for large blocks), wherever it runs;
- sync: ``os.fdatasync``, wherever it runs (at ``close()``, or in a background window sync);
- sync wait: the request waiting for the ``fdatasync`` at ``close()`` (``_off_hub``, on the
  request's own thread only: deferred durability's window syncs run in the background, after the
  answer, and count under sync alone);
- redis: redis-py's ``execute_command`` and ``Pipeline.execute``, and the chunk scripts sent
  straight down a connection (``DirectScript.direct``): round trips and scripts;
- inline: writes and hashes that run on the request's own thread (blocks under 256 KiB, and
  the block that completes a chunk);
- helper wait: the request waiting for a block's jobs (its write and its hash, side
  by side or one after the other: ``ChunkWriter``), which overlap the next read;
- total: the WSGI call, from Django's handler to the end of the response body.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
from chunky_site.wsgi import application as site
from django.core.handlers.wsgi import WSGIRequest

from chunky_redis.core import checksums, filesystem
from chunky_redis.core.direct_scripts import DirectScript
from chunky_redis.protocols import socket_body

PARTS = ("read", "hash", "write", "sync", "redis", "helper_wait", "sync_wait", "inline", "total")
_totals = dict.fromkeys(PARTS, 0.0)
_requests = 0
_lock = threading.Lock()
_local = threading.local()  # per thread (per greenlet under gevent): nesting, inside a request


def _add(part: str, seconds: float) -> None:
    with _lock:
        _totals[part] += seconds


def _timed(
    part: str,
    func: Callable[..., Any],
    *,
    outermost: bool = False,
    in_request: bool = False,
    inline: bool = False,
) -> Callable[..., Any]:
    """Time ``func`` under ``part``; with ``in_request``, only on a request's own thread; with
    ``inline``, also under inline when it runs on a request's own thread."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(_local, part, 0)
        if outermost and depth:
            return func(*args, **kwargs)
        setattr(_local, part, depth + 1)
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            setattr(_local, part, depth)
            on_request = getattr(_local, "in_request", False)
            if not in_request or on_request:
                _add(part, elapsed)
            if inline and on_request:
                _add("inline", elapsed)

    return wrapper


checksums.ResumableHash.update = _timed(  # type: ignore[method-assign]
    "hash", checksums.ResumableHash.update, inline=True
)
filesystem.ChunkWriter._write_block = _timed(  # type: ignore[method-assign]
    "write", filesystem.ChunkWriter._write_block, inline=True
)
filesystem.ChunkWriter._wait_pending = _timed(  # type: ignore[method-assign]
    "helper_wait", filesystem.ChunkWriter._wait_pending
)
os.fdatasync = _timed("sync", os.fdatasync)
filesystem._off_hub = _timed("sync_wait", filesystem._off_hub, in_request=True)
WSGIRequest.read = _timed("read", WSGIRequest.read)  # type: ignore[method-assign]
socket_body._GunicornBody.read = _timed("read", socket_body._GunicornBody.read)  # type: ignore[method-assign]
redis.Redis.execute_command = _timed(  # type: ignore[method-assign]
    "redis", redis.Redis.execute_command, outermost=True
)
redis.client.Pipeline.execute = _timed(  # type: ignore[method-assign]
    "redis", redis.client.Pipeline.execute, outermost=True
)
DirectScript.direct = _timed("redis", DirectScript.direct, outermost=True)  # type: ignore[method-assign]


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    global _requests
    if environ["PATH_INFO"] == "/__breakdown__":  # the totals so far, then zero
        with _lock:
            body = json.dumps({"requests": _requests, "seconds": dict(_totals)}).encode()
            _totals.update(dict.fromkeys(PARTS, 0.0))
            _requests = 0
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    _local.in_request = True
    started = time.perf_counter()
    response = site(environ, start_response)
    try:
        return [b"".join(response)]
    finally:
        close = getattr(response, "close", None)
        if close is not None:
            close()
        _add("total", time.perf_counter() - started)
        _local.in_request = False
        with _lock:
            _requests += 1
