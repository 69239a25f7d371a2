"""Removing what abandoned uploads leave behind, in proportion to the work.

Expired uploads are found through a sorted set of expiry times (no scan of
Redis); files that have no record at all are found by listing the upload
directory. Neither path ever touches the file of an upload that is still
uploading or being processed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from . import signals
from .conf import conf
from .runtime import get_storage, get_store
from .storage import ChunkStorage
from .store import COMPLETE, EXPIRED, FAILED, UploadStore

logger = logging.getLogger("chunky_redis")

_BATCH = 500


@dataclass
class SweepResult:
    expired: int = 0
    orphans: int = 0

    def __str__(self) -> str:
        return f"{self.expired} expired upload(s) and {self.orphans} orphan file(s) removed"


def purge_expired_uploads(
    *, store: UploadStore | None = None, chunks: ChunkStorage | None = None
) -> SweepResult:
    store = store or get_store()
    chunks = chunks or get_storage()
    result = SweepResult()
    skipped: set[str] = set()  # still in the sorted set; looked at again by the next sweep
    while True:
        due = [i for i in store.due_expiries(limit=_BATCH + len(skipped)) if i not in skipped]
        if not due:
            break
        for upload_id in due:
            answer = store.mark_expired(upload_id)
            if answer in ("locked", "live"):
                skipped.add(upload_id)  # a request is writing to it, or its expiry slid forward
                continue
            store.forget_expiry(upload_id)
            if answer in ("ok", "missing", EXPIRED):
                chunks.delete(upload_id)
                result.expired += 1
                signals.send(signals.upload_expired, upload_id=upload_id)
    grace = conf.ORPHAN_GRACE.total_seconds()
    batch: list[str] = []
    for upload_id in chunks.iter_ids(older_than_s=grace):
        batch.append(upload_id)
        if len(batch) >= _BATCH:
            _sweep_orphans(batch, store, chunks, result)
            batch = []
    if batch:
        _sweep_orphans(batch, store, chunks, result)
    if result.expired or result.orphans:
        logger.info("chunky_redis: sweep: %s", result)
    return result


def _sweep_orphans(
    upload_ids: list[str], store: UploadStore, chunks: ChunkStorage, result: SweepResult
) -> None:
    """Delete the chunk files, among ``upload_ids``, that no live or processing upload owns."""
    for upload_id, status in store.statuses(upload_ids).items():
        # Complete and failed uploads no longer need their chunk file; a file
        # survives there only when a worker died between two steps.
        if status not in (None, EXPIRED, COMPLETE, FAILED):
            continue
        if chunks.delete(upload_id):
            result.orphans += 1
            if status in (None, EXPIRED):
                signals.send(signals.upload_expired, upload_id=upload_id)
