"""The Celery application of the bundled service: ``celery -A tasks worker`` / ``celery -A tasks beat``."""

from .celery import app

__all__ = ["app"]
