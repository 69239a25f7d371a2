"""Moved: the upload errors to ``chunky_redis.core.errors``; this import path keeps working."""

from .core.errors import *  # noqa: F403
from .core.errors import ChunkyError

__all__ = ["ChunkyError"]
