"""Builds the Django-free core (store, chunk storage, service) from settings.

It imports no dialect and no post-processing: the completion hand-off is
injected by the app's ready() (set_completion_handler), so that the processing
layer can build its parts here without an import cycle.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import lru_cache

import redis as redis_lib
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, RedisClusterException
from redis.retry import Retry

from .chunk_storages import S3, s3_chunk_storage
from .conf import conf, milliseconds
from .core.errors import StoreUnavailable
from .core.filesystem import FileSystemChunkStorage
from .core.quotas import QuotaTracker
from .core.redis_clients import AnyRedis, client_from_url
from .core.storage import ChunkStorage
from .core.store import Upload, UploadStore
from .core.uploads import Policy, UploadService
from .extras import installed, missing_message
from .observe import upload_observer

CompletionHandler = Callable[[Upload], None]

_lock = threading.Lock()
_fake_server = None
_completion_handler: CompletionHandler | None = None
_shared_service: UploadService | None = None
_service_lock = threading.Lock()  # not _lock: building the service takes that one

# What needs the optional Redis packages, in the words of the errors that report them missing.
EMBEDDED = "the embedded Redis (neither CHUNKY_REDIS_REDIS_URL nor CHUNKY_REDIS_REDIS_ALIAS is set)"
ALIAS = "CHUNKY_REDIS_REDIS_ALIAS"


@lru_cache(maxsize=8)
def _client_for_url(url: str, socket_timeout: float, connect_timeout: float) -> AnyRedis:
    # redis-py's pool notices a fork and reconnects in the child, so one
    # client per URL per process is safe under pre-forking servers.
    # A cluster client asks the cluster for its slots as it is built: not cached when that fails.
    try:
        return client_from_url(
            url,
            # A reply that never comes (Redis frozen, a partition) must end the request with a
            # 503, not hold it: redis-py before 6 waits forever by default.
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            # Connection errors only, twice, within ~0.3 s: that replaces a pooled connection
            # that a Redis restart closed, and answers 503 quickly while Redis is down. Never
            # after a timeout (redis-py's default retries those ten times): the command may be
            # queued in a frozen Redis, and would then run once per attempt when it resumes.
            retry=Retry(
                ExponentialBackoff(cap=0.2, base=0.05),
                retries=2,
                supported_errors=(ConnectionError,),
            ),
            health_check_interval=30,
        )
    except (redis_lib.RedisError, RedisClusterException) as e:
        raise StoreUnavailable(f"Redis is unavailable: {e}") from e


def _fake_client() -> redis_lib.Redis:
    """The embedded default: one in-process fakeredis server shared by all threads.

    It is for trying the service out on one process; state is lost on restart
    and not shared between processes.
    """
    global _fake_server
    try:
        import fakeredis
    except ImportError as e:  # system check E010 reports it at start-up
        raise ImproperlyConfigured(missing_message("fakeredis", EMBEDDED)) from e

    with _lock:
        if _fake_server is None:
            _fake_server = fakeredis.FakeServer()
    return fakeredis.FakeRedis(server=_fake_server)


def get_redis() -> AnyRedis:
    if conf.REDIS_ALIAS:
        try:
            from django_redis import get_redis_connection
        except ImportError as e:  # system check E011 reports it at start-up
            raise ImproperlyConfigured(missing_message("django_redis", ALIAS)) from e

        connection: AnyRedis = get_redis_connection(conf.REDIS_ALIAS)
        return connection
    if conf.REDIS_URL:
        return _client_for_url(
            conf.REDIS_URL,
            conf.REDIS_SOCKET_TIMEOUT.total_seconds(),
            conf.REDIS_CONNECT_TIMEOUT.total_seconds(),
        )
    return _fake_client()


def using_embedded_redis() -> bool:
    return not (conf.REDIS_ALIAS or conf.REDIS_URL)


def missing_redis_package() -> tuple[str, str] | None:
    """(module, what needs it) when the configured Redis needs a package that is not installed."""
    if conf.REDIS_ALIAS:
        needed = ("django_redis", ALIAS)
    elif conf.REDIS_URL:
        return None
    else:
        needed = ("fakeredis", EMBEDDED)
    return None if installed(needed[0]) else needed


def get_store() -> UploadStore:
    return UploadStore(
        get_redis(),
        prefix=conf.KEY_PREFIX,
        lock_timeout_ms=milliseconds(conf.LOCK_TIMEOUT),
        expired_retention_ms=milliseconds(conf.EXPIRED_RETENTION),
        completed_retention_ms=milliseconds(conf.COMPLETED_RETENTION),
        lock_request_timeout_ms=milliseconds(conf.LOCK_REQUEST_TIMEOUT),
        wait_replicas=conf.WAIT_REPLICAS,
        wait_timeout_ms=milliseconds(conf.WAIT_TIMEOUT),
    )


def get_storage() -> ChunkStorage:
    """The chunk storage ``CHUNKY_REDIS_CHUNK_STORAGE`` chooses."""
    if conf.CHUNK_STORAGE == S3:
        return s3_chunk_storage()
    return FileSystemChunkStorage(
        conf.UPLOAD_DIR, fsync=conf.FSYNC, sync_chunks=not conf.SYNC_EVERY
    )


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
            sync_every=conf.SYNC_EVERY if conf.FSYNC and conf.CHUNK_STORAGE != S3 else 0,
        ),
        on_complete=on_complete or _hand_off,
        quotas=QuotaTracker(store.redis, prefix=conf.KEY_PREFIX, clock=store.clock),
        observer=upload_observer(),
    )


def shared_service() -> UploadService:
    """The service the views use: built once per process, on first use, instead of once per
    request (building one registers the store's Lua scripts and reads every setting: about a
    tenth of a 64 KiB chunk's CPU). Built again after any setting changes (Django's
    ``setting_changed``, which ``override_settings`` sends) and in a forked child."""
    global _shared_service
    service = _shared_service
    if service is None:
        with _service_lock:
            service = _shared_service
            if service is None:
                service = _shared_service = get_service()
    return service


def forget_shared_service(**_: object) -> None:
    """Drop the shared service: the next shared_service() builds it from the settings again."""
    global _shared_service
    _shared_service = None


# A child of a fork (a pre-forking server with preload_app) builds its own.
os.register_at_fork(after_in_child=forget_shared_service)


def set_completion_handler(handler: CompletionHandler) -> None:
    """Where completed uploads go (the app's ready() sets the Celery hand-off)."""
    global _completion_handler
    _completion_handler = handler


def _hand_off(upload: Upload) -> None:
    if _completion_handler is None:
        raise RuntimeError("No completion handler: is chunky_redis in INSTALLED_APPS?")
    _completion_handler(upload)
