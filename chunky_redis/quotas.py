"""Moved to ``chunky_redis.core.quotas``; this import path keeps working."""

from .core.quotas import Quota, QuotaTracker

__all__ = ["Quota", "QuotaTracker"]
