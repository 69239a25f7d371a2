"""The post-processing steps with their parts built from settings (through runtime).

finalize.py and sweeper.py take the store, the chunk storage and the final
storage as arguments; the Celery tasks, the completion hand-off and the
management commands call them through here.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import runtime
from ..chunk_storages import get_final_storage
from ..core.storage import ChunkStorage
from ..core.store import UploadStore
from . import finalize as steps
from . import metering, sweeper
from .finished_signals import new_run_id


def finalize(
    upload_id: str,
    *,
    store: UploadStore | None = None,
    chunks: ChunkStorage | None = None,
    run_id: str = "",
) -> steps.Outcome:
    """Verify, move to the final storage, mark complete and send the signals (idempotent).

    ``run_id``: the Celery task id, which its retries share (a new one when empty). Each
    attempt is timed for the metrics (metering.py; nothing when they are off).
    """
    return metering.timed_finalization(
        lambda: steps.finalize(
            upload_id,
            store=store or runtime.get_store(),
            chunks=chunks or runtime.get_storage(),
            final=get_final_storage(),
            run_id=run_id or new_run_id(),
        )
    )


def fail_upload(upload_id: str, reason: str, *, run_id: str = "") -> steps.Outcome:
    """Fail the upload, as task ``run_id`` giving up (a new run when empty)."""
    return steps.fail_upload(
        upload_id, reason, store=runtime.get_store(), run_id=run_id or new_run_id()
    )


def purge_expired_uploads(
    *,
    enqueue: Callable[[str], None],
    store: UploadStore | None = None,
    chunks: ChunkStorage | None = None,
) -> sweeper.SweepResult:
    return sweeper.purge_expired_uploads(
        store=store or runtime.get_store(),
        chunks=chunks or runtime.get_storage(),
        enqueue=enqueue,
    )


def retry_failed(
    upload_id: str, *, enqueue: Callable[[str], None], store: UploadStore | None = None
) -> str:
    return steps.retry_failed(
        upload_id,
        store=store or runtime.get_store(),
        chunks=runtime.get_storage(),
        final=get_final_storage(),
        enqueue=enqueue,
    )
