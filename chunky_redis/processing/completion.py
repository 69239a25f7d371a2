"""The one place where a completed upload is handed to post-processing.

``on_complete`` is what the Django layer injects into the upload service
(apps.py); the functions below run the steps with this same enqueue, so that
replacing ``enqueue_finalize`` (tests do) changes every hand-off at once.
"""

from __future__ import annotations

from ..core.storage import ChunkStorage
from ..core.store import Upload, UploadStore
from . import jobs
from .finalize import Outcome
from .sweeper import SweepResult
from .tasks import enqueue_finalize

__all__ = [
    "enqueue_finalize",
    "fail_upload",
    "finalize",
    "on_complete",
    "purge_expired_uploads",
    "retry_failed",
]

fail_upload = jobs.fail_upload


def on_complete(upload: Upload) -> None:
    """The upload service's hand-off: queue the upload's finalization."""
    enqueue_finalize(upload.upload_id)


def finalize(
    upload_id: str,
    *,
    store: UploadStore | None = None,
    chunks: ChunkStorage | None = None,
    run_id: str = "",
) -> Outcome:
    return jobs.finalize(upload_id, store=store, chunks=chunks, run_id=run_id)


def purge_expired_uploads(
    *, store: UploadStore | None = None, chunks: ChunkStorage | None = None
) -> SweepResult:
    """One sweep (the beat task runs the same); lost hand-offs are queued again."""
    return jobs.purge_expired_uploads(enqueue=enqueue_finalize, store=store, chunks=chunks)


def retry_failed(upload_id: str, *, store: UploadStore | None = None) -> str:
    """failed -> processing, and queue the finalization again (``manage.py chunky_retry``)."""
    return jobs.retry_failed(upload_id, enqueue=enqueue_finalize, store=store)
