"""Moved to ``chunky_redis.protocols.chunky``; this import path keeps working."""

from .protocols.chunky import ChunkedUploadView, not_found

__all__ = ["ChunkedUploadView", "not_found"]
