"""Builds the Django-free core (store, chunk storage, service) from settings.

It imports no dialect and no post-processing: the completion hand-off is
injected by the app's ready() (set_completion_handler), so that the processing
layer can build its parts here without an import cycle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import lru_cache

import redis as redis_lib
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError
from redis.retry import Retry

from .conf import conf, milliseconds
from .core.filesystem import FileSystemChunkStorage
from .core.quotas import QuotaTracker
from .core.storage import ChunkStorage
from .core.store import Upload, UploadStore
from .core.uploads import Policy, UploadService

CompletionHandler = Callable[[Upload], None]

_lock = threading.Lock()
_fake_server = None
_completion_handler: CompletionHandler | None = None


@lru_cache(maxsize=8)
def _client_for_url(url: str, socket_timeout: float, connect_timeout: float) -> redis_lib.Redis:
    # redis-py's pool notices a fork and reconnects in the child, so one
    # client per URL per process is safe under pre-forking servers.
    return redis_lib.Redis.from_url(
        url,
        # A reply that never comes (Redis frozen, a partition) must end the request with a 503,
        # not hold it: redis-py before 6 waits forever by default.
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        # Connection errors only, twice, within ~0.3 s: that replaces a pooled connection that
        # a Redis restart closed, and answers 503 quickly while Redis is down. Never after a
        # timeout (redis-py's default retries those ten times): the command may be queued in
        # a frozen Redis, and would then run once per attempt when it resumes.
        retry=Retry(
            ExponentialBackoff(cap=0.2, base=0.05), retries=2, supported_errors=(ConnectionError,)
        ),
        health_check_interval=30,
    )


def _fake_client() -> redis_lib.Redis:
    """The embedded default: one in-process fakeredis server shared by all threads.

    It is for trying the service out on one process; state is lost on restart
    and not shared between processes.
    """
    global _fake_server
    import fakeredis

    with _lock:
        if _fake_server is None:
            _fake_server = fakeredis.FakeServer()
    return fakeredis.FakeRedis(server=_fake_server)


def get_redis() -> redis_lib.Redis:
    if conf.REDIS_ALIAS:
        from django_redis import get_redis_connection

        return get_redis_connection(conf.REDIS_ALIAS)
    if conf.REDIS_URL:
        return _client_for_url(
            conf.REDIS_URL,
            conf.REDIS_SOCKET_TIMEOUT.total_seconds(),
            conf.REDIS_CONNECT_TIMEOUT.total_seconds(),
        )
    return _fake_client()


def using_embedded_redis() -> bool:
    return not (conf.REDIS_ALIAS or conf.REDIS_URL)


def get_store() -> UploadStore:
    return UploadStore(
        get_redis(),
        prefix=conf.KEY_PREFIX,
        lock_timeout_ms=milliseconds(conf.LOCK_TIMEOUT),
        expired_retention_ms=milliseconds(conf.EXPIRED_RETENTION),
        completed_retention_ms=milliseconds(conf.COMPLETED_RETENTION),
        lock_request_timeout_ms=milliseconds(conf.LOCK_REQUEST_TIMEOUT),
    )


def get_storage() -> ChunkStorage:
    return FileSystemChunkStorage(conf.UPLOAD_DIR, fsync=conf.FSYNC)


def get_service(on_complete: CompletionHandler | None = None) -> UploadService:
    store = get_store()
    return UploadService(
        store=store,
        storage=get_storage(),
        policy=Policy(
            algorithm=conf.CHECKSUM_ALGORITHM,
            expiration_ms=milliseconds(conf.EXPIRATION),
            sliding_expiration=conf.SLIDING_EXPIRATION,
            requeue_after_ms=milliseconds(conf.REQUEUE_AFTER),
        ),
        on_complete=on_complete or _hand_off,
        quotas=QuotaTracker(store.redis, prefix=conf.KEY_PREFIX, clock=store.clock),
    )


def set_completion_handler(handler: CompletionHandler) -> None:
    """Where completed uploads go (the app's ready() sets the Celery hand-off)."""
    global _completion_handler
    _completion_handler = handler


def _hand_off(upload: Upload) -> None:
    if _completion_handler is None:
        raise RuntimeError("No completion handler: is chunky_redis in INSTALLED_APPS?")
    _completion_handler(upload)
