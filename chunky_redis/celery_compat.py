"""Moved to ``chunky_redis.processing.celery_compat``; this import path keeps working."""

from .processing.celery_compat import patch_kombu_redis

__all__ = ["patch_kombu_redis"]
