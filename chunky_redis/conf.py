"""Every ``CHUNKY_REDIS_*`` setting, read when first used and again after any setting changes.

docs/reference/settings.md is generated from these properties: their annotation, their
value when the setting is unset, and their docstring (tests/test_docs.py fails when one has none).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.core.signals import setting_changed

_PREFIX = "CHUNKY_REDIS_"

_T = TypeVar("_T")


def as_timedelta(value: Any) -> timedelta:
    """Durations may be given as a timedelta or as a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    raise TypeError(f"Expected a timedelta or a number of seconds, got {value!r}.")


def multiproc_dir() -> str | None:
    """prometheus_client's multiprocess directory, when set (its own variable, not a setting):
    every process of a server that forks writes its metrics there."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def milliseconds(value: timedelta) -> int:
    return int(value.total_seconds() * 1000)


class Settings:
    def __init__(self) -> None:
        # Values already read: a chunk request reads several settings, and an unset one costs
        # Django an exception each time. Emptied whenever a setting changes (``setting_changed``,
        # which override_settings and pytest-django's ``settings`` send).
        self._values: dict[str, Any] = {}
        setting_changed.connect(self._forget)

    def _forget(self, **_: object) -> None:
        self._values.clear()

    def _get(self, name: str, default: _T) -> _T:
        # Typed as the property's annotation (mypy infers _T from the return type): a value of
        # another type is the user's mistake, which checks.py reports where it can.
        try:
            value: _T = self._values[name]
        except KeyError:
            value = self._values[name] = getattr(settings, _PREFIX + name, default)
        return value

    # -- Redis ---------------------------------------------------------------
    @property
    def REDIS_URL(self) -> str | None:
        """The Redis to keep upload state in.

        One server: ``"redis://redis:6379/0"`` (``rediss://`` for TLS, ``unix://`` for a socket).
        A Redis Cluster: ``"redis+cluster://[user:password@]node1:6379,node2:6379"`` (any
        reachable nodes: they are seeds; only database 0; ``rediss+cluster://`` for TLS). A
        primary managed by Sentinel:
        ``"redis+sentinel://[user:password@]sentinel1:26379,sentinel2:26379/SERVICE[/DB]"`` (the
        password is the primary's; ``?sentinel_password=...`` is the Sentinels';
        ``rediss+sentinel://`` for TLS). Query options are redis-py's (``?socket_timeout=5``). A
        URL that cannot be used is ``chunky_redis.E020``.

        With neither this nor ``CHUNKY_REDIS_REDIS_ALIAS``, the embedded in-process fakeredis is
        used: for trying out only (it needs the ``embedded`` extra, ``chunky_redis.E010`` says when
        it is missing, and ``chunky_redis.W002`` warns when ``DEBUG`` is off)."""
        return self._get("REDIS_URL", None)

    @property
    def REDIS_ALIAS(self) -> str | None:
        """A django-redis cache alias whose connection is used instead, e.g. ``"default"``.

        It wins over ``CHUNKY_REDIS_REDIS_URL``. This is how to share a connection with your
        cache, or use any connection option django-redis supports (its Sentinel client
        included). Needs the ``django-redis`` extra (``chunky_redis.E011`` says when it is
        missing)."""
        return self._get("REDIS_ALIAS", None)

    @property
    def KEY_PREFIX(self) -> str:
        """Prefix of every Redis key.

        No braces: a ``{...}`` in it would become the Redis Cluster hash tag of every key,
        putting all uploads in one slot (``chunky_redis.E021``)."""
        return self._get("KEY_PREFIX", "chunky")

    @property
    def REDIS_SOCKET_TIMEOUT(self) -> timedelta:
        """How long a Redis reply may take.

        A request whose reply does not come in time (Redis frozen, a network partition) answers
        ``503 store_unavailable`` instead of waiting forever. Commands are retried only after a
        *connection* error (twice, within about 0.3 s: that replaces a pooled connection a Redis
        restart closed), never after a timeout, when the command may still run once Redis
        resumes. With ``CHUNKY_REDIS_REDIS_ALIAS`` the django-redis client's own options apply."""
        return as_timedelta(self._get("REDIS_SOCKET_TIMEOUT", timedelta(seconds=5)))

    @property
    def REDIS_CONNECT_TIMEOUT(self) -> timedelta:
        """How long connecting to Redis may take."""
        return as_timedelta(self._get("REDIS_CONNECT_TIMEOUT", timedelta(seconds=2)))

    @property
    def WAIT_REPLICAS(self) -> int:
        """When above 0, a chunk is answered only once this many replicas have its record.

        Redis ``WAIT`` runs after the script that creates the upload or advances its offset, so
        that a failover cannot take an acknowledged offset back. When fewer acknowledge within
        ``CHUNKY_REDIS_WAIT_TIMEOUT``, the chunk is answered ``503 store_unavailable``: it is
        recorded on the primary, and the client asks for the offset and carries on (a first
        chunk is simply sent again: its upload id was never given out). Costs one replica round
        trip per chunk. Needs a real Redis (``chunky_redis.E022``)."""
        return self._get("WAIT_REPLICAS", 0)

    @property
    def WAIT_TIMEOUT(self) -> timedelta:
        """How long a chunk waits for ``CHUNKY_REDIS_WAIT_REPLICAS`` replicas."""
        return as_timedelta(self._get("WAIT_TIMEOUT", timedelta(seconds=1)))

    # -- storage -------------------------------------------------------------
    @property
    def UPLOAD_DIR(self) -> str:
        """The directory chunk files are written to.

        Every web and Celery worker must see the same directory (local disk for one host; NFS,
        EFS or another shared volume for several). Put it on the same volume as the final
        storage to make the hand-off a rename."""
        value: str | os.PathLike[str] | None = self._get("UPLOAD_DIR", None)
        if value:
            return os.fspath(value)
        media_root = getattr(settings, "MEDIA_ROOT", "") or ""
        if media_root:
            return os.path.join(os.fspath(media_root), "chunky_uploads")
        return ""

    @property
    def CHUNK_STORAGE(self) -> str:
        """Where the chunks of uploads in progress are written: ``"filesystem"`` or ``"s3"``.

        ``"filesystem"``: a file per upload in ``CHUNKY_REDIS_UPLOAD_DIR``, which every web and
        Celery worker must share. ``"s3"``: each upload is an S3 multipart upload in the bucket of
        the final storage (``CHUNKY_REDIS_FINAL_STORAGE``, a django-storages ``S3Storage``, whose
        bucket, location, endpoint and credentials it uses), completed at finalization into the
        final object without a copy; the workers then share only Redis and the bucket. The object
        is named by ``CHUNKY_REDIS_FINAL_NAME_TEMPLATE`` with ``{filename}`` as ``upload`` (the key
        is fixed when the upload begins, before the client names the file). Another value is
        ``chunky_redis.E060``; ``"s3"`` with a final storage that is not on S3 ``chunky_redis.E062``."""
        return self._get("CHUNK_STORAGE", "filesystem")

    @property
    def S3_PART_SIZE(self) -> int | None:
        """The part size of new uploads with ``CHUNKY_REDIS_CHUNK_STORAGE = "s3"``, in bytes;
        ``None`` chooses it: 8 MiB, or more when ``CHUNKY_REDIS_MAX_BYTES`` would need more
        than S3's 10,000 parts of 8 MiB (78 GiB).

        Each chunk in flight holds up to one part in memory. S3 needs at least 5 MiB, at most
        5 GiB, and ``10,000 x`` this at least ``CHUNKY_REDIS_MAX_BYTES`` (``chunky_redis.E061``).
        Larger files are refused (``too_large``)."""
        return self._get("S3_PART_SIZE", None)

    @property
    def FSYNC(self) -> bool:
        """``fdatasync`` every chunk before recording it.

        A recorded offset then never points past bytes a power loss could take back."""
        return bool(self._get("FSYNC", True))

    @property
    def SYNC_EVERY(self) -> int:
        """Deferred durability: 0 (the default) syncs (``fdatasync``) every chunk before recording
        it; above 0, the chunk file is synced once this many bytes of it are unsynced (in the
        background, after the chunk that filled the window is answered), and before the upload
        completes (before the last chunk is answered).

        Each record then keeps the last synced offset and the boot id of the host holding the
        bytes past it. After a host crash (a new boot id) a status read reports the synced
        offset, and the next request re-reads the unsynced bytes (this many, plus the chunks
        received while a background sync ran), keeps them if they match the recorded checksum
        state and otherwise takes the upload back to the synced offset, from which the client
        resends: an acknowledged chunk can be asked for again, but no upload completes with
        bytes the client did not send.
        Another host serving the upload re-reads them too, so keep an upload on one host (or
        use 0) when several serve one volume. Needs an incremental checksum (see
        ``chunky_redis.W001``); without it unsynced bytes are never kept after a crash. No effect
        with ``CHUNKY_REDIS_FSYNC`` off, nor with chunks on S3 (durable once stored)."""
        return self._get("SYNC_EVERY", 0)

    @property
    def BLOCK_SIZE(self) -> int:
        """How many bytes are read from the request and written at a time."""
        return self._get("BLOCK_SIZE", 1 << 20)

    @property
    def FINAL_STORAGE(self) -> str | None:
        """The storage the finished file is handed to: a key of ``settings.STORAGES`` or a
        dotted path to a ``Storage`` class; ``None`` is the ``default`` storage.

        A ``FileSystemStorage`` on the same volume as the upload directory gets an atomic
        rename; a storage with local paths (``path()``) on another volume a streamed save to a
        temporary name and a rename; any other storage (S3 through django-storages, say) a
        streamed save, which must make the object visible only when whole (S3 does)."""
        return self._get("FINAL_STORAGE", None)

    @property
    def FINAL_NAME_TEMPLATE(self) -> str:
        """Name of the file in the final storage.

        It must contain ``{upload_id}``, which keeps every name unique and makes a retried
        hand-off safe; ``{filename}`` is the client's filename."""
        return self._get("FINAL_NAME_TEMPLATE", "chunky_redis/{upload_id}/{filename}")

    # -- lifetimes -----------------------------------------------------------
    @property
    def EXPIRATION(self) -> timedelta:
        """Lifetime of an upload from its creation."""
        return as_timedelta(self._get("EXPIRATION", timedelta(days=1)))

    @property
    def SLIDING_EXPIRATION(self) -> bool:
        """When on, every accepted chunk moves the expiry to now + ``CHUNKY_REDIS_EXPIRATION``."""
        return bool(self._get("SLIDING_EXPIRATION", False))

    @property
    def EXPIRED_RETENTION(self) -> timedelta:
        """How long an expired upload keeps answering 410 before it is forgotten (404)."""
        return as_timedelta(self._get("EXPIRED_RETENTION", timedelta(days=1)))

    @property
    def COMPLETED_RETENTION(self) -> timedelta:
        """How long complete and failed records stay readable."""
        return as_timedelta(self._get("COMPLETED_RETENTION", timedelta(days=7)))

    @property
    def LOCK_TIMEOUT(self) -> timedelta:
        """Lifetime of the per-upload lock; a writer renews it every third of this while it
        writes.

        After a crashed request, the upload is free again after this long. It must be longer
        than the slowest client takes to send one ``CHUNKY_REDIS_BLOCK_SIZE`` block."""
        return as_timedelta(self._get("LOCK_TIMEOUT", timedelta(seconds=30)))

    @property
    def LOCK_REQUEST_TIMEOUT(self) -> timedelta:
        """A lock request that reaches Redis later than this after it was sent takes no lock.

        The limit is the Redis client's socket timeout when that is shorter; the request then
        answers 503, since its sender has given up. Measured on Redis's clock (see the
        architecture page for clock skew)."""
        return as_timedelta(self._get("LOCK_REQUEST_TIMEOUT", timedelta(seconds=5)))

    @property
    def FINALIZE_LEASE(self) -> timedelta:
        """How long a dead worker keeps an upload's finalization from others.

        A live worker renews the lease every third of it, however long the hand-off takes.
        Keep it above your worst pause of a worker (a long GC or a frozen VM), or two workers
        may hand off at once (still harmless: the name is the upload's own and only the status
        winner signals)."""
        return as_timedelta(self._get("FINALIZE_LEASE", timedelta(seconds=30)))

    @property
    def REQUEUE_AFTER(self) -> timedelta:
        """An upload in ``processing`` that no worker holds the lease of is queued again (by a
        retried completion, or by the sweeper) once it was queued this long ago.

        Shorter recovers lost hand-offs sooner; a task still waiting in a backlog may then run
        twice, which is harmless."""
        return as_timedelta(self._get("REQUEUE_AFTER", timedelta(minutes=1)))

    @property
    def FINALIZE_MAX_RETRIES(self) -> int:
        """How many times finalization retries transient errors (Redis, storage), with
        exponential backoff, before the upload is marked ``failed``."""
        return self._get("FINALIZE_MAX_RETRIES", 8)

    @property
    def SWEEP_INTERVAL(self) -> timedelta:
        """How often the bundled beat schedule runs the sweeper."""
        return as_timedelta(self._get("SWEEP_INTERVAL", timedelta(minutes=5)))

    @property
    def ORPHAN_GRACE(self) -> timedelta:
        """A chunk file with no record is only removed once it is this old."""
        return as_timedelta(self._get("ORPHAN_GRACE", timedelta(hours=1)))

    # -- limits and policy ---------------------------------------------------
    @property
    def MAX_BYTES(self) -> int | None:
        """Largest allowed file; ``None`` is no limit.

        A larger declared total (or body, without Content-Range) is refused with
        ``400 too_large`` before anything is written. The view hook ``get_max_bytes()`` can
        decide per request."""
        return self._get("MAX_BYTES", None)

    @property
    def MAX_UPLOADS_IN_FLIGHT(self) -> int | None:
        """How many uploads one owner may have in flight: begun and neither completed nor
        expired; ``None`` is no limit.

        One more is refused with ``429 too_many_uploads`` before a byte is written. An
        abandoned upload counts until it expires (``CHUNKY_REDIS_EXPIRATION``). The owner is the
        user's pk; anonymous users all share one owner, so for them the quota is one pool for
        every anonymous client together. Override the view's ``get_quota(request)`` to vary it."""
        return self._get("MAX_UPLOADS_IN_FLIGHT", None)

    @property
    def MAX_BYTES_IN_FLIGHT(self) -> int | None:
        """The most bytes (declared sizes) one owner's uploads in flight may hold together;
        ``None`` is no limit.

        An upload that would pass it is refused with ``413 quota_exceeded`` (before a byte is
        written when its size is declared; a multipart body without Content-Range once it is
        read, and its bytes are then dropped). Owners are counted as for
        ``CHUNKY_REDIS_MAX_UPLOADS_IN_FLIGHT``."""
        return self._get("MAX_BYTES_IN_FLIGHT", None)

    @property
    def MAX_JSON_BODY(self) -> int:
        """Largest JSON-format chunk body in bytes (that format spends about 4 bytes per byte)."""
        return self._get("MAX_JSON_BODY", 32 << 20)

    @property
    def CHECKSUM_ALGORITHM(self) -> str:
        """One of ``md5``, ``sha1``, ``sha256``, ``sha512``; the completion field is named after it.

        On a CPU with SHA extensions (``sha_ni`` in /proc/cpuinfo), ``sha256`` hashes about twice
        as fast as ``md5``: 1.31x the throughput at 8 MiB chunks and 1.25x for 8 uploads at once
        (docs/performance.md). Clients must then send a sha256 at completion."""
        return self._get("CHECKSUM_ALGORITHM", "md5")

    @property
    def ALLOW_ANONYMOUS(self) -> bool:
        """Accept uploads from anonymous users (the bundled site turns it on).

        The random 128-bit upload id is then the only capability, as in tus."""
        return bool(self._get("ALLOW_ANONYMOUS", False))

    @property
    def VERIFY_STORED_BYTES(self) -> bool:
        """Make the task re-read the stored file and verify its checksum, instead of trusting
        the digest computed while receiving.

        Catches corruption at rest, at the cost of reading the file once."""
        return bool(self._get("VERIFY_STORED_BYTES", False))

    @property
    def TASK_QUEUE(self) -> str | None:
        """Queue for ``finalize_upload``; ``None`` is Celery's default queue."""
        return self._get("TASK_QUEUE", None)

    # -- metrics -------------------------------------------------------------
    @property
    def METRICS(self) -> bool:
        """Count uploads, chunks, finalizations and errors for Prometheus.

        Needs the ``metrics`` extra (``chunky_redis.E070`` says when it is missing). Mount
        ``chunky_redis.urls_metrics`` to serve them; a server that forks (gunicorn, Celery's
        prefork pool) also needs ``PROMETHEUS_MULTIPROC_DIR`` (docs/howto/metrics.md). Off, no
        metric is counted and ``prometheus_client`` is never imported."""
        return bool(self._get("METRICS", False))

    @property
    def METRICS_TOKEN(self) -> str | None:
        """When set, the metrics view answers only requests with
        ``Authorization: Bearer <token>`` (others get 404).

        Set it wherever the view is reachable from outside; a non-empty string
        (``chunky_redis.E072``)."""
        return self._get("METRICS_TOKEN", None)

    @property
    def METRICS_WORKER_PORT(self) -> int | None:
        """The port on which each Celery worker serves its metrics over HTTP
        (``http://HOST:PORT/metrics``, all its pool processes together); ``None`` is none.

        Served on every address of the worker's host, without authentication: keep the port
        inside the cluster. An integer from 1 to 65535 (``chunky_redis.E071``)."""
        return self._get("METRICS_WORKER_PORT", None)


conf = Settings()
