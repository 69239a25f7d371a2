"""The one place where a completed upload is handed to post-processing."""

from __future__ import annotations

from ..conf import conf


def enqueue_finalize(upload_id: str) -> None:
    """Queue ``finalize_upload`` for the upload (run inline when Celery is eager)."""
    from .tasks import finalize_upload

    options = {"queue": conf.TASK_QUEUE} if conf.TASK_QUEUE else {}
    finalize_upload.apply_async(args=[upload_id], **options)
