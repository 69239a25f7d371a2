"""The Prometheus metrics (the ``metrics`` extra): what is counted, and what a scrape shows.

Imported only while ``CHUNKY_REDIS_METRICS`` is on, through chunky_redis/observe.py (web)
and chunky_redis/processing/metering.py (worker): off, nothing imports prometheus_client.
docs/howto/metrics.md lists the metrics and how to serve them.

Counters and histograms belong to the process that counts them. Under a server that forks
(gunicorn, Celery's prefork pool) prometheus_client's multiprocess mode writes them into
``PROMETHEUS_MULTIPROC_DIR``, and the process that answers a scrape reads the whole directory.
The uploads in flight and in processing are kept by no process: each scrape reads them from the
indexes in Redis, so they are right however many processes count, start or die.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .conf import multiproc_dir
from .core import errors as exc
from .core.observer import UploadObserver
from .core.records import Upload
from .core.store import UploadStore

logger = logging.getLogger("chunky_redis")

_MIB = 1 << 20
# Chunk durations run from milliseconds (a small chunk on loopback) to minutes (a large one on
# a phone); finalizations from a rename to a copy of gigabytes to S3.
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_SIZES = tuple(float(s) for s in (64 << 10, 256 << 10, _MIB, 4 * _MIB, 8 * _MIB, 16 * _MIB,
                                  32 * _MIB, 64 * _MIB, 128 * _MIB))  # fmt: skip

UPLOADS_STARTED = Counter(
    "chunky_redis_uploads_started",
    "Uploads created: their first chunk recorded, or created without data.",
)
UPLOADS_COMPLETED = Counter(
    "chunky_redis_uploads_completed",
    "Uploads finalized into the final storage (upload_completed sent).",
)
UPLOADS_FAILED = Counter(
    "chunky_redis_uploads_failed", "Uploads whose finalization failed (upload_failed sent)."
)
UPLOADS_EXPIRED = Counter(
    "chunky_redis_uploads_expired",
    "Expired uploads, and chunk files without a record, the sweeper removed (upload_expired sent).",
)
RECEIVED_BYTES = Counter("chunky_redis_received_bytes", "Bytes of recorded chunks.")
CHUNK_SECONDS = Histogram(
    "chunky_redis_chunk_duration_seconds",
    "From a chunk's start (its headers checked, before its lock) to its record, for recorded chunks.",
    buckets=_SECONDS,
)
CHUNK_BYTES = Histogram(
    "chunky_redis_chunk_size_bytes", "Bytes of each recorded chunk.", buckets=_SIZES
)
FINALIZE_SECONDS = Histogram(
    "chunky_redis_finalize_duration_seconds",
    "One attempt at finalizing an upload, by outcome (complete, failed, skipped, busy, error).",
    ["outcome"],
    buckets=_SECONDS,
)
QUEUE_DELAY = Histogram(
    "chunky_redis_finalize_queue_delay_seconds",
    "From marking an upload processing (or queueing it again) to the start of the "
    "finalization attempt that finished it.",
    buckets=_SECONDS,
)
REFUSALS = Counter("chunky_redis_refusals", "Requests refused, by error code.", ["code"])
LOCK_CONFLICTS = Counter(
    "chunky_redis_lock_conflicts",
    "Requests refused because another request held the upload's lock, or took it over.",
)
REDIS_ERRORS = Counter(
    "chunky_redis_redis_errors",
    "Redis unreachable or refusing: requests answered 503 (role web), finalization attempts "
    "retried or sweeps failed (role worker), scrapes without the Redis gauges (role scrape).",
    ["role"],
)
STORAGE_ERRORS = Counter(
    "chunky_redis_storage_errors",
    "The chunk storage failing a request (role web), or the chunk or final storage failing a "
    "finalization attempt or a sweep (role worker).",
    ["role"],
)

# Series that exist from the start, at 0: a rate over a series that appears only with its first
# error would miss that error.
for _role in ("web", "worker", "scrape"):
    REDIS_ERRORS.labels(_role)
    STORAGE_ERRORS.labels(_role)


class PrometheusObserver(UploadObserver):
    def chunk_recorded(self, upload: Upload, received: int, seconds: float, created: bool) -> None:
        if created:
            UPLOADS_STARTED.inc()
        if received:  # an upload created without data, or an empty file, is no chunk
            RECEIVED_BYTES.inc(received)
            CHUNK_BYTES.observe(received)
            CHUNK_SECONDS.observe(seconds)


OBSERVER = PrometheusObserver()


def count_refusal(error: exc.ChunkyError) -> None:
    REFUSALS.labels(error.code).inc()
    if isinstance(error, exc.UploadLocked):
        LOCK_CONFLICTS.inc()
    elif isinstance(error, exc.StoreUnavailable):
        REDIS_ERRORS.labels("web").inc()
    elif isinstance(error, exc.StorageError):
        STORAGE_ERRORS.labels("web").inc()


def count_finalization(outcome: str, seconds: float, waited_ms: int | None) -> None:
    FINALIZE_SECONDS.labels(outcome).observe(seconds)
    if waited_ms is not None:
        QUEUE_DELAY.observe(waited_ms / 1000)


def count_finalize_error(error: BaseException, seconds: float) -> None:
    FINALIZE_SECONDS.labels("error").observe(seconds)
    count_worker_error(error)


def count_worker_error(error: BaseException) -> None:
    """A Redis or a storage error in a worker's job (finalization, sweep); others are bugs."""
    if isinstance(error, exc.StoreUnavailable) or _from_package(error, "redis"):
        REDIS_ERRORS.labels("worker").inc()
    elif isinstance(error, (exc.StorageError, OSError)) or _from_package(error, "botocore"):
        STORAGE_ERRORS.labels("worker").inc()


def _from_package(error: BaseException, package: str) -> bool:
    return type(error).__module__.partition(".")[0] == package


# -- what a scrape shows ---------------------------------------------------------------------

_GAUGES = {
    "chunky_redis_uploads_in_flight": "Uploads in progress: uploading and not expired (from Redis).",
    "chunky_redis_uploads_processing": "Uploads handed to finalization and not finished (from Redis).",
}


class RedisGauges(Collector):
    """The uploads in flight and in processing, counted in Redis's indexes at each scrape.

    Every process's scrape shows the same, deployment-wide numbers: aggregate them with
    ``max``, never ``sum``. Without Redis they are left out of the scrape (and counted as a
    Redis error), so that the other metrics still come through.
    """

    def __init__(self, get_store: Callable[[], UploadStore]):
        self.get_store = get_store

    def describe(self) -> Iterator[Metric]:
        for name, text in _GAUGES.items():
            yield GaugeMetricFamily(name, text)

    def collect(self) -> Iterator[Metric]:
        try:
            store = self.get_store()
            values = (store.count_in_flight(), store.count_processing())
        except exc.StoreUnavailable as e:
            logger.warning("chunky_redis: metrics: cannot count the uploads in Redis: %s", e)
            REDIS_ERRORS.labels("scrape").inc()
            return
        for (name, text), value in zip(_GAUGES.items(), values, strict=True):
            yield GaugeMetricFamily(name, text, value=value)


_registry: list[CollectorRegistry] = []
_registry_lock = threading.Lock()  # two first scrapes at once must not register twice


def registry(get_store: Callable[[], UploadStore]) -> CollectorRegistry:
    """What a scrape of this process shows (``get_store``: runtime's, for the Redis gauges).

    In multiprocess mode, the samples of every process in ``PROMETHEUS_MULTIPROC_DIR`` (read at
    each scrape); otherwise this process's default registry, a host's own metrics included."""
    with _registry_lock:
        if not _registry:
            if multiproc_dir():
                found = CollectorRegistry()
                # (prometheus_client leaves this constructor unannotated)
                MultiProcessCollector(found)  # type: ignore[no-untyped-call]
            else:
                found = REGISTRY
            found.register(RedisGauges(get_store))
            _registry.append(found)
        return _registry[0]


def exposition(get_store: Callable[[], UploadStore]) -> tuple[bytes, str]:
    """The scrape's body and content type."""
    return generate_latest(registry(get_store)), CONTENT_TYPE_LATEST
