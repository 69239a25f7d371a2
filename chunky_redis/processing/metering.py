"""Where the worker side reports to the metrics (chunky_redis/metrics.py), and how a Celery
worker serves them.

While ``CHUNKY_REDIS_METRICS`` is off each of these reads that one setting and returns:
nothing is counted and prometheus_client is never imported.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from celery.signals import worker_process_shutdown, worker_ready

from .. import runtime
from ..conf import conf, multiproc_dir
from . import signals
from .finalize import FinalizeBusy, Outcome

logger = logging.getLogger("chunky_redis")


def timed_finalization(attempt: Callable[[], Outcome]) -> Outcome:
    """Run one finalization attempt; count its duration, its outcome and its queue delay."""
    if not conf.METRICS:
        return attempt()
    from .. import metrics

    began = time.monotonic()
    try:
        outcome = attempt()
    except FinalizeBusy:
        metrics.count_finalization("busy", time.monotonic() - began, None)
        raise
    except Exception as e:
        metrics.count_finalize_error(e, time.monotonic() - began)
        raise
    metrics.count_finalization(outcome.status, time.monotonic() - began, outcome.waited_ms)
    return outcome


def count_error(error: BaseException) -> None:
    """A worker's job failed with ``error``: count it if it is a Redis or a storage error."""
    if conf.METRICS:
        from .. import metrics

        metrics.count_worker_error(error)


def _completed(**kwargs: Any) -> None:
    if conf.METRICS:
        from ..metrics import UPLOADS_COMPLETED

        UPLOADS_COMPLETED.inc()


def _failed(**kwargs: Any) -> None:
    if conf.METRICS:
        from ..metrics import UPLOADS_FAILED

        UPLOADS_FAILED.inc()


def _expired(**kwargs: Any) -> None:
    if conf.METRICS:
        from ..metrics import UPLOADS_EXPIRED

        UPLOADS_EXPIRED.inc()


def _serve(**kwargs: Any) -> None:
    """The worker's main process is ready: serve the metrics of its pool on the configured port."""
    port = conf.METRICS_WORKER_PORT
    if not (conf.METRICS and port):
        return
    from prometheus_client import start_http_server

    from ..metrics import registry

    if not multiproc_dir():
        logger.warning(
            "chunky_redis: PROMETHEUS_MULTIPROC_DIR is not set: the metrics on port %s show this "
            "process only, not the tasks its prefork pool runs",
            port,
        )
    start_http_server(port, registry=registry(runtime.get_store))
    logger.info("chunky_redis: metrics on port %s (http://HOST:%s/metrics)", port, port)


def _forget_process(**kwargs: Any) -> None:
    """A pool process exits: its live gauges go (multiprocess mode; counters stay counted)."""
    if conf.METRICS and multiproc_dir():
        from prometheus_client import multiprocess

        # (prometheus_client leaves this function unannotated)
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def connect() -> None:
    """Count the uploads completed, failed and expired from the signals the worker sends, and
    serve a Celery worker's metrics (the app's ready(); the receivers read the setting each
    time, so that tests can change it)."""
    for signal, receiver in (
        (signals.upload_completed, _completed),
        (signals.upload_failed, _failed),
        (signals.upload_expired, _expired),
    ):
        signal.connect(receiver, dispatch_uid=f"chunky_redis.metering.{receiver.__name__}")
    worker_ready.connect(_serve, dispatch_uid="chunky_redis.metering.serve", weak=False)
    worker_process_shutdown.connect(
        _forget_process, dispatch_uid="chunky_redis.metering.forget", weak=False
    )
