"""Moved to ``chunky_redis.processing.tasks``.

This module stays: Celery's ``autodiscover_tasks()`` imports ``chunky_redis.tasks``.
"""

from .processing.tasks import finalize_upload, purge_expired_uploads

__all__ = ["finalize_upload", "purge_expired_uploads"]
