"""The bundled service's Celery app: ``celery -A tasks worker`` and ``celery -A tasks beat``."""

from .celery import app

__all__ = ["app"]
