"""Every ``CHUNKY_REDIS_*`` setting, read at access time so that override_settings works.

The README has one heading per setting; keep the two in step.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from django.conf import settings

_PREFIX = "CHUNKY_REDIS_"


def as_timedelta(value: Any) -> timedelta:
    """Durations may be given as a timedelta or as a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    raise TypeError(f"Expected a timedelta or a number of seconds, got {value!r}.")


def milliseconds(value: timedelta) -> int:
    return int(value.total_seconds() * 1000)


class Settings:
    def _get(self, name: str, default: Any) -> Any:
        return getattr(settings, _PREFIX + name, default)

    # -- Redis ---------------------------------------------------------------
    @property
    def REDIS_URL(self) -> str | None:
        return self._get("REDIS_URL", None)

    @property
    def REDIS_ALIAS(self) -> str | None:
        """A django-redis cache alias whose connection is used (wins over REDIS_URL)."""
        return self._get("REDIS_ALIAS", None)

    @property
    def KEY_PREFIX(self) -> str:
        return self._get("KEY_PREFIX", "chunky")

    @property
    def REDIS_SOCKET_TIMEOUT(self) -> timedelta:
        """How long a Redis reply may take before the request gives up (503)."""
        return as_timedelta(self._get("REDIS_SOCKET_TIMEOUT", timedelta(seconds=5)))

    @property
    def REDIS_CONNECT_TIMEOUT(self) -> timedelta:
        return as_timedelta(self._get("REDIS_CONNECT_TIMEOUT", timedelta(seconds=2)))

    @property
    def WAIT_REPLICAS(self) -> int:
        """Replicas that must have each recorded chunk before it is acknowledged (Redis WAIT); 0: none."""
        return self._get("WAIT_REPLICAS", 0)

    @property
    def WAIT_TIMEOUT(self) -> timedelta:
        return as_timedelta(self._get("WAIT_TIMEOUT", timedelta(seconds=1)))

    # -- storage -------------------------------------------------------------
    @property
    def UPLOAD_DIR(self) -> str:
        value = self._get("UPLOAD_DIR", None)
        if value:
            return os.fspath(value)
        media_root = getattr(settings, "MEDIA_ROOT", "") or ""
        if media_root:
            return os.path.join(os.fspath(media_root), "chunky_uploads")
        return ""

    @property
    def FSYNC(self) -> bool:
        return bool(self._get("FSYNC", True))

    @property
    def BLOCK_SIZE(self) -> int:
        return self._get("BLOCK_SIZE", 1 << 20)

    @property
    def FINAL_STORAGE(self) -> str | None:
        """A key of settings.STORAGES or a dotted path to a Storage class; None is default_storage."""
        return self._get("FINAL_STORAGE", None)

    @property
    def FINAL_NAME_TEMPLATE(self) -> str:
        return self._get("FINAL_NAME_TEMPLATE", "chunky_redis/{upload_id}/{filename}")

    # -- lifetimes -----------------------------------------------------------
    @property
    def EXPIRATION(self) -> timedelta:
        return as_timedelta(self._get("EXPIRATION", timedelta(days=1)))

    @property
    def SLIDING_EXPIRATION(self) -> bool:
        return bool(self._get("SLIDING_EXPIRATION", False))

    @property
    def EXPIRED_RETENTION(self) -> timedelta:
        """How long an expired upload keeps answering 410 before it is forgotten (404)."""
        return as_timedelta(self._get("EXPIRED_RETENTION", timedelta(days=1)))

    @property
    def COMPLETED_RETENTION(self) -> timedelta:
        return as_timedelta(self._get("COMPLETED_RETENTION", timedelta(days=7)))

    @property
    def LOCK_TIMEOUT(self) -> timedelta:
        return as_timedelta(self._get("LOCK_TIMEOUT", timedelta(seconds=30)))

    @property
    def LOCK_REQUEST_TIMEOUT(self) -> timedelta:
        """A lock request reaching Redis later than this after it was sent takes no lock."""
        return as_timedelta(self._get("LOCK_REQUEST_TIMEOUT", timedelta(seconds=5)))

    @property
    def FINALIZE_LEASE(self) -> timedelta:
        """How long a dead worker keeps an upload's finalization from others (renewed
        every third of it while the worker lives)."""
        return as_timedelta(self._get("FINALIZE_LEASE", timedelta(seconds=30)))

    @property
    def REQUEUE_AFTER(self) -> timedelta:
        """An upload in processing that no worker is finalizing is queued again this long
        after it was last queued (by a retried completion, or by the sweeper)."""
        return as_timedelta(self._get("REQUEUE_AFTER", timedelta(minutes=1)))

    @property
    def FINALIZE_MAX_RETRIES(self) -> int:
        return self._get("FINALIZE_MAX_RETRIES", 8)

    @property
    def SWEEP_INTERVAL(self) -> timedelta:
        return as_timedelta(self._get("SWEEP_INTERVAL", timedelta(minutes=5)))

    @property
    def ORPHAN_GRACE(self) -> timedelta:
        """A chunk file with no record is only swept once it is this old."""
        return as_timedelta(self._get("ORPHAN_GRACE", timedelta(hours=1)))

    # -- limits and policy ---------------------------------------------------
    @property
    def MAX_BYTES(self) -> int | None:
        return self._get("MAX_BYTES", None)

    @property
    def MAX_UPLOADS_IN_FLIGHT(self) -> int | None:
        """Per owner: uploads begun and neither completed nor expired (429 beyond)."""
        return self._get("MAX_UPLOADS_IN_FLIGHT", None)

    @property
    def MAX_BYTES_IN_FLIGHT(self) -> int | None:
        """Per owner: the sum of the sizes of those uploads (413 beyond)."""
        return self._get("MAX_BYTES_IN_FLIGHT", None)

    @property
    def MAX_JSON_BODY(self) -> int:
        return self._get("MAX_JSON_BODY", 32 << 20)

    @property
    def CHECKSUM_ALGORITHM(self) -> str:
        return self._get("CHECKSUM_ALGORITHM", "md5")

    @property
    def ALLOW_ANONYMOUS(self) -> bool:
        return bool(self._get("ALLOW_ANONYMOUS", False))

    @property
    def VERIFY_STORED_BYTES(self) -> bool:
        return bool(self._get("VERIFY_STORED_BYTES", False))

    @property
    def TASK_QUEUE(self) -> str | None:
        return self._get("TASK_QUEUE", None)


conf = Settings()
