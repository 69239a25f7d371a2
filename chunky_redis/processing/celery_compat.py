"""A work-around for a Celery worker that exits when its Redis broker restarts.

The crash ("Unrecoverable error: AttributeError('NoneType' object has no attribute
'hostname')", kombu 5.7 with Celery 5.7, reproduced by tests/test_outages.py) comes from
this sequence in the worker's main process:

1. The lost connection is noticed on some socket other than the task channel's BRPOP
   (the remote-control or gossip subscription, an acknowledgement), so the task channel
   is still waiting for its BRPOP reply.
2. Celery calls ``connection.collect()``. Closing the task channel first reads that BRPOP
   reply, which fails, so the close stops half-way; ``collect()`` goes on and detaches the
   transport from its connection (``transport.client = None``).
3. Celery then calls ``connection.close()``, which closes the same channel again, to the
   end this time. The channel drops its connection pools and, because it still holds an
   unacknowledged message (a finalization running or just finished: the task is
   ``acks_late``), restores it, which needs a new pool, built from
   ``transport.client.hostname``: ``None.hostname``.
4. AttributeError is not one of the transport's connection errors, so neither
   ``ignore_errors()`` nor the consumer's reconnect loop catches it, and the worker exits.

Hence intermittent: it needs both the order of step 1 and a message in flight. The fix here
turns "the transport was detached" into the connection error it is. Celery then reconnects as
for any other lost connection; the unacknowledged message stays in kombu's unacked index in
Redis and is delivered again after the visibility timeout (or, if Redis came back empty, the
upload is found in ``processing`` by the sweeper). Finalization is idempotent either way.

Upstream: no report of this sequence was found. celery/kombu#582 is the same AttributeError
from an older path (a gossip channel closed after the transport); celery/kombu#2592 handled a
sibling (a stale file descriptor's KeyError) the same way, by making it a connection error.
Drop this module once kombu raises a connection error here itself.

Call :func:`patch_kombu_redis` once where the Celery app is created (``tasks/celery.py`` does).
"""

from __future__ import annotations

import functools
from typing import Any

_PATCHED = "_chunky_redis_patched"
# The private method patched (kombu's stubs leave it out, so it is reached by name).
_METHOD = "_connparams"


def patch_kombu_redis() -> bool:
    """Make a channel of a detached kombu Redis transport raise ConnectionError; idempotent.

    Returns whether the patch is in place (False when kombu's Redis transport is missing or
    no longer has the method).
    """
    try:
        import redis.exceptions
        from kombu.transport import redis as transport
    except ImportError:
        return False
    original = getattr(transport.Channel, _METHOD, None)
    if original is None:
        return False
    if getattr(original, _PATCHED, False):
        return True

    @functools.wraps(original)
    def _connparams(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError(
                "the broker connection of this channel was closed (see chunky_redis.processing.celery_compat)"
            )
        params: dict[str, Any] = original(self, *args, **kwargs)
        return params

    setattr(_connparams, _PATCHED, True)
    setattr(transport.Channel, _METHOD, _connparams)
    return True
