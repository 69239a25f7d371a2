"""Removing what abandoned uploads leave behind, and recovering stuck ones,
in proportion to the work.

Expired uploads are found through a sorted set of expiry times, uploads whose
post-processing may have been lost through a sorted set of uploads in
processing (no scan of Redis); files that have no record at all are found by
listing the upload directory. No path ever touches the file of an upload
that is uploading, processing or failed (a failed one keeps its bytes for
``chunky_retry`` until its record's retention ends), nor the file of one whose
lock or creation marker lives: a request may be writing it, whatever its age.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..conf import conf, milliseconds
from ..core.storage import ChunkStorage
from ..core.store import COMPLETE, EXPIRED, UploadStore
from . import signals

logger = logging.getLogger("chunky_redis")

_BATCH = 500


@dataclass
class SweepResult:
    expired: int = 0
    orphans: int = 0
    requeued: int = 0

    def __str__(self) -> str:
        text = f"{self.expired} expired upload(s) and {self.orphans} orphan file(s) removed"
        return text + (f"; {self.requeued} upload(s) queued again" if self.requeued else "")


def purge_expired_uploads(
    *, store: UploadStore, chunks: ChunkStorage, enqueue: Callable[[str], None]
) -> SweepResult:
    """One sweep; ``enqueue`` queues the finalization of an upload whose hand-off was lost."""
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
    _requeue_lost(store, result, enqueue)
    store.prune_failed()
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


def _requeue_lost(store: UploadStore, result: SweepResult, enqueue: Callable[[str], None]) -> None:
    """Queue again the uploads in processing that no worker finalizes, long after
    they were queued: their hand-off was lost. A duplicate is harmless (the
    finalization is idempotent and only the status winner sends signals)."""
    after_ms = milliseconds(conf.REQUEUE_AFTER)
    cutoff = store.now() - after_ms
    while due := store.due_processing(cutoff, limit=_BATCH):
        # Each id is either stamped with a later time or dropped, so this ends.
        for upload_id in due:
            if store.requeue(upload_id, after_ms) != "ok":
                continue
            logger.warning("chunky_redis: queueing upload %s again (lost hand-off)", upload_id)
            enqueue(upload_id)
            result.requeued += 1


def _sweep_orphans(
    upload_ids: list[str], store: UploadStore, chunks: ChunkStorage, result: SweepResult
) -> None:
    """Delete the chunk files, among ``upload_ids``, that no upload needs any more."""
    for upload_id, presence in store.presence(upload_ids).items():
        # Complete uploads no longer need their chunk file; one survives there only
        # when a worker died between two steps. "locked": a request holds the lock
        # or the creation marker of a new upload, and may be writing the file.
        if presence not in ("missing", EXPIRED, COMPLETE):
            continue
        if chunks.delete(upload_id):
            result.orphans += 1
            if presence in ("missing", EXPIRED):
                signals.send(signals.upload_expired, upload_id=upload_id)
