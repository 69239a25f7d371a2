"""Moved to ``chunky_redis.processing.signals``; this import path keeps working."""

from .processing.signals import (
    chunky_upload_complete,
    send,
    upload_completed,
    upload_expired,
    upload_failed,
)

__all__ = ["chunky_upload_complete", "send", "upload_completed", "upload_expired", "upload_failed"]
