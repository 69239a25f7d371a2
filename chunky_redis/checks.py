"""System checks for the CHUNKY_REDIS_* settings. Ids are stable; docs/reference/checks.md lists them."""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLResolver, get_resolver

from .chunk_storages import CHUNK_STORAGES, S3, get_final_storage, is_s3
from .conf import as_timedelta, conf, multiproc_dir
from .core import s3parts
from .core.checksums import ALGORITHMS, incremental_available
from .core.redis_clients import parse
from .extras import EXTRAS, install_command, installed, missing_message
from .runtime import missing_redis_package, using_embedded_redis

_DURATIONS = (
    "EXPIRATION",
    "EXPIRED_RETENTION",
    "COMPLETED_RETENTION",
    "LOCK_TIMEOUT",
    "ORPHAN_GRACE",
    "FINALIZE_LEASE",
    "REQUEUE_AFTER",
    "LOCK_REQUEST_TIMEOUT",
    "SWEEP_INTERVAL",
    "REDIS_SOCKET_TIMEOUT",
    "REDIS_CONNECT_TIMEOUT",
    "WAIT_TIMEOUT",
)


# Named, not imported: the checks sit below the dialects and never import them.
CHUNKED_UPLOAD_COMPLETE_VIEW = "chunky_redis.protocols.chunked_upload.ChunkedUploadCompleteView"


def _mounted(view: str) -> bool:
    """Whether the project's URLs route to ``view`` (a dotted class name) or a subclass of it."""
    try:
        patterns = list(get_resolver().url_patterns)
    except Exception:  # a broken URLconf is Django's own check's to report
        return False
    while patterns:
        pattern = patterns.pop()
        if isinstance(pattern, URLResolver):
            patterns.extend(pattern.url_patterns)
            continue
        view_class = getattr(getattr(pattern, "callback", None), "view_class", None)
        names = (f"{k.__module__}.{k.__qualname__}" for k in getattr(view_class, "__mro__", ()))
        if view in names:
            return True
    return False


def _raw(name: str) -> Any:
    return getattr(settings, "CHUNKY_REDIS_" + name, None)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    algorithm = conf.CHECKSUM_ALGORITHM
    if algorithm not in ALGORITHMS:
        errors.append(
            Error(
                f"CHUNKY_REDIS_CHECKSUM_ALGORITHM is {algorithm!r}.",
                hint=f"Use one of {', '.join(ALGORITHMS)}.",
                id="chunky_redis.E001",
            )
        )
    elif algorithm != "md5" and _mounted(CHUNKED_UPLOAD_COMPLETE_VIEW):
        errors.append(
            Error(
                f"CHUNKY_REDIS_CHECKSUM_ALGORITHM is {algorithm!r}, but the django-chunked-upload "
                "dialect is mounted: its pages complete with an md5, so every completion fails.",
                hint="Leave CHUNKY_REDIS_CHECKSUM_ALGORITHM at 'md5', or unmount "
                "chunky_redis.chunked_upload_urls.",
                id="chunky_redis.E050",
            )
        )
    if algorithm in ALGORITHMS and not incremental_available(algorithm):
        errors.append(
            Warning(
                f"libcrypto's low-level {algorithm} functions are not available, so the checksum "
                "cannot be computed as chunks arrive.",
                hint="Completion will read the whole stored file to compute it. Install OpenSSL 3 (libcrypto).",
                id="chunky_redis.W001",
            )
        )
    if not conf.UPLOAD_DIR and conf.CHUNK_STORAGE != S3:
        errors.append(
            Error(
                "No upload directory: set CHUNKY_REDIS_UPLOAD_DIR (or MEDIA_ROOT).",
                hint="Point it at a directory every web and worker process shares.",
                id="chunky_redis.E002",
            )
        )
    for name in _DURATIONS:
        value = _raw(name)
        if value is None:
            continue
        try:
            ok = as_timedelta(value).total_seconds() > 0
        except TypeError:
            ok = False
        if not ok:
            errors.append(
                Error(
                    f"CHUNKY_REDIS_{name} must be a positive timedelta or number of seconds, not {value!r}.",
                    id="chunky_redis.E003",
                )
            )
    errors += _positive_ints(("MAX_BYTES",), "None or a positive integer", "E004")
    errors += _positive_ints(
        ("MAX_UPLOADS_IN_FLIGHT", "MAX_BYTES_IN_FLIGHT"),
        "None (no limit) or a positive integer",
        "E009",
    )
    alias = conf.REDIS_ALIAS
    if alias:
        backend = getattr(settings, "CACHES", {}).get(alias, {}).get("BACKEND", "")
        if not backend.startswith("django_redis."):
            errors.append(
                Error(
                    f"CHUNKY_REDIS_REDIS_ALIAS is {alias!r}, which is not a django-redis cache in CACHES.",
                    id="chunky_redis.E005",
                )
            )
    errors += _check_final_storage()
    errors += _check_chunk_storage()
    errors += _check_redis()
    errors += _check_metrics()
    errors += _positive_ints(("BLOCK_SIZE", "MAX_JSON_BODY"), "a positive integer", "E007")
    sync_every = _raw("SYNC_EVERY")
    if sync_every is not None and not (
        sync_every == 0 and type(sync_every) is int or _positive_int(sync_every)
    ):
        errors.append(
            Error(
                f"CHUNKY_REDIS_SYNC_EVERY must be 0 (sync every chunk) or a positive number of "
                f"bytes, not {sync_every!r}.",
                id="chunky_redis.E080",
            )
        )
    template = conf.FINAL_NAME_TEMPLATE
    try:
        rendered = template.format(upload_id="0" * 32, filename="f")
    except (KeyError, IndexError, ValueError, AttributeError):
        rendered = ""
    if "0" * 32 not in rendered:
        errors.append(
            Error(
                f"CHUNKY_REDIS_FINAL_NAME_TEMPLATE {template!r} must contain {{upload_id}} and no other "
                "field than {filename}.",
                hint="The upload id keeps every final name unique, which makes a retried hand-off safe.",
                id="chunky_redis.E008",
            )
        )
    missing = missing_redis_package()
    if missing:
        module, needed_for = missing
        errors.append(
            Error(
                missing_message(module, needed_for),
                hint="Install the extra, or set CHUNKY_REDIS_REDIS_URL instead.",
                id="chunky_redis.E010" if module == "fakeredis" else "chunky_redis.E011",
            )
        )
    if using_embedded_redis() and not settings.DEBUG:
        errors.append(
            Warning(
                "No Redis is configured: uploads use the embedded in-process fakeredis, which is lost on "
                "restart and not shared between processes.",
                hint="Set CHUNKY_REDIS_REDIS_URL or CHUNKY_REDIS_REDIS_ALIAS in production.",
                id="chunky_redis.W002",
            )
        )
    return errors


def _positive_ints(names: tuple[str, ...], expected: str, check_id: str) -> list[CheckMessage]:
    """Settings that, when set, must be positive integers (unset means the default)."""
    errors: list[CheckMessage] = []
    for name in names:
        value = _raw(name)
        if value is not None and not _positive_int(value):
            errors.append(
                Error(
                    f"CHUNKY_REDIS_{name} must be {expected}, not {value!r}.",
                    id=f"chunky_redis.{check_id}",
                )
            )
    return errors


def _check_final_storage() -> list[CheckMessage]:
    from django.core.files.storage import InvalidStorageError
    from django.utils.module_loading import import_string

    name = conf.FINAL_STORAGE
    if not name:
        return []
    try:
        if "." in name:
            import_string(name)
        else:
            from django.core.files.storage import storages

            storages[name]
    # django-storages reports a missing boto3 as ImproperlyConfigured.
    except (ImportError, InvalidStorageError, ImproperlyConfigured) as e:
        hint = "Give a key of settings.STORAGES or a dotted path to a Storage class."
        module = _missing_module(e)
        if module in EXTRAS:  # the storage of an extra (S3: storages, boto3) is not installed
            hint = f"It is not installed: {install_command(module)}."
        return [
            Error(
                f"CHUNKY_REDIS_FINAL_STORAGE {name!r} cannot be loaded: {e}",
                hint=hint,
                id="chunky_redis.E006",
            )
        ]
    return []


def _check_chunk_storage() -> list[CheckMessage]:
    """The chunk storage and its S3 part size (ids 060 and up)."""
    kind = conf.CHUNK_STORAGE
    if kind not in CHUNK_STORAGES:
        return [
            Error(
                f"CHUNKY_REDIS_CHUNK_STORAGE must be one of {', '.join(map(repr, CHUNK_STORAGES))}, "
                f"not {kind!r}.",
                id="chunky_redis.E060",
            )
        ]
    if kind != S3:
        return []
    errors: list[CheckMessage] = []
    part = _raw("S3_PART_SIZE")
    limit = conf.MAX_BYTES if _positive_int(conf.MAX_BYTES) else None
    if part is not None and (
        not _positive_int(part)
        or not s3parts.MIN_PART_SIZE <= part <= s3parts.MAX_PART_SIZE
        or (limit is not None and s3parts.max_upload_size(part) < limit)
    ):
        errors.append(
            Error(
                f"CHUNKY_REDIS_S3_PART_SIZE must be None or a number of bytes from 5 MiB to 5 GiB "
                f"whose 10,000 times covers CHUNKY_REDIS_MAX_BYTES, not {part!r}.",
                hint="Leave it None to have it chosen from CHUNKY_REDIS_MAX_BYTES.",
                id="chunky_redis.E061",
            )
        )
    for module in ("storages", "boto3"):
        if not installed(module):
            return errors + [
                Error(
                    missing_message(module, 'CHUNKY_REDIS_CHUNK_STORAGE = "s3"'),
                    id="chunky_redis.E062",
                )
            ]
    try:
        final = get_final_storage()
    except Exception:  # E006 reports why it cannot be loaded
        return errors
    if not is_s3(final):
        errors.append(
            Error(
                'CHUNKY_REDIS_CHUNK_STORAGE is "s3", but CHUNKY_REDIS_FINAL_STORAGE is not an S3 storage '
                f"({type(final).__module__}.{type(final).__name__}).",
                hint="Name a storages.backends.s3.S3Storage: its multipart uploads are completed into "
                "the final objects, in its bucket.",
                id="chunky_redis.E062",
            )
        )
    return errors


def _check_redis() -> list[CheckMessage]:
    """The Redis URL, the key prefix and the replica wait (ids 020 and up)."""
    errors: list[CheckMessage] = []
    url = conf.REDIS_URL
    if url and not conf.REDIS_ALIAS:
        try:
            parse(url)
        except ValueError as e:
            errors.append(
                Error(
                    f"CHUNKY_REDIS_REDIS_URL cannot be used: {e}.",
                    hint="e.g. redis://HOST:6379/0, redis+cluster://HOST:7000,HOST:7001 or "
                    "redis+sentinel://HOST:26379,HOST:26380/mymaster/0",
                    id="chunky_redis.E020",
                )
            )
    prefix: object = conf.KEY_PREFIX  # whatever the user set, checked here
    if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
        errors.append(
            Error(
                f"CHUNKY_REDIS_KEY_PREFIX must be a non-empty string without braces, not {prefix!r}.",
                hint="A brace would make it the Redis Cluster hash tag of every key: all uploads "
                "in one slot, on one shard.",
                id="chunky_redis.E021",
            )
        )
    replicas = _raw("WAIT_REPLICAS")
    if replicas is not None and (
        not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0
    ):
        errors.append(
            Error(
                f"CHUNKY_REDIS_WAIT_REPLICAS must be a non-negative integer, not {replicas!r}.",
                id="chunky_redis.E022",
            )
        )
    elif replicas and using_embedded_redis():
        errors.append(
            Error(
                "CHUNKY_REDIS_WAIT_REPLICAS is set, but the embedded fakeredis has no replicas.",
                hint="Set CHUNKY_REDIS_REDIS_URL or CHUNKY_REDIS_REDIS_ALIAS, or leave it at 0.",
                id="chunky_redis.E022",
            )
        )
    return errors


def _check_metrics() -> list[CheckMessage]:
    """The metrics settings (ids 070 and up)."""
    errors: list[CheckMessage] = []
    if conf.METRICS and not installed("prometheus_client"):
        errors.append(
            Error(
                missing_message("prometheus_client", "CHUNKY_REDIS_METRICS"),
                hint="Install the extra, or turn CHUNKY_REDIS_METRICS off.",
                id="chunky_redis.E070",
            )
        )
    port = _raw("METRICS_WORKER_PORT")
    if port is not None and not (_positive_int(port) and port <= 65535):
        errors.append(
            Error(
                f"CHUNKY_REDIS_METRICS_WORKER_PORT must be None or a port (1-65535), not {port!r}.",
                id="chunky_redis.E071",
            )
        )
    token = _raw("METRICS_TOKEN")
    if token is not None and not (isinstance(token, str) and token.strip()):
        errors.append(
            Error(
                f"CHUNKY_REDIS_METRICS_TOKEN must be None or a non-empty string, not {token!r}.",
                id="chunky_redis.E072",
            )
        )
    directory = multiproc_dir()
    if conf.METRICS and directory and not os.access(directory, os.W_OK | os.X_OK):
        errors.append(
            Error(
                f"PROMETHEUS_MULTIPROC_DIR is {directory!r}, which is not a writable directory.",
                hint="Every process of the server writes its metrics there: create it first "
                "(deploy/gunicorn.conf.py does for gunicorn), or unset it for a server that "
                "does not fork.",
                id="chunky_redis.E073",
            )
        )
    return errors


def _missing_module(error: BaseException | None) -> str:
    """The top-level module whose import failed somewhere in the chain of ``error``, or ''."""
    while error is not None:
        if isinstance(error, ImportError) and error.name:
            return error.name.partition(".")[0]
        error = error.__cause__ or error.__context__
    return ""
