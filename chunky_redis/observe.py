"""Where the web side reports to the metrics (chunky_redis/metrics.py).

While ``CHUNKY_REDIS_METRICS`` is off each of these reads that one setting and returns:
nothing is counted and prometheus_client is never imported. The worker side is in
processing/metering.py.
"""

from __future__ import annotations

from .conf import conf
from .core.errors import ChunkyError
from .core.observer import NO_OBSERVER, UploadObserver


def upload_observer() -> UploadObserver:
    """What the upload service tells of each recorded chunk (runtime.get_service)."""
    if not conf.METRICS:
        return NO_OBSERVER
    from .metrics import OBSERVER

    return OBSERVER


def refused(error: ChunkyError) -> None:
    """A dialect answered a request with ``error`` (protocols/base.py's json_error)."""
    if conf.METRICS:
        from .metrics import count_refusal

        count_refusal(error)
