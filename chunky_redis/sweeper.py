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


def purge_expired_uploads(*, store: UploadStore | None = None, chunks: ChunkStorage | None = None) -> SweepResult:
    store = store or get_store()
    chunks = chunks or get_storage()
    result = SweepResult()
    seen: set[str] = set()
    while True:
        due = [upload_id for upload_id in store.due_expiries(limit=_BATCH) if upload_id not in seen]
        if not due:
            break
        for upload_id in due:
            seen.add(upload_id)
            answer = store.mark_expired(upload_id)
            if answer in ("locked", "live"):
                continue  # a request is writing to it, or its expiry slid forward
            store.forget_expiry(upload_id)
            if answer in ("ok", "missing", EXPIRED):
                chunks.delete(upload_id)
                result.expired += 1
                signals.send(signals.upload_expired, upload_id=upload_id)
    grace = conf.ORPHAN_GRACE.total_seconds()
    for upload_id in chunks.iter_ids(older_than_s=grace):
        upload = store.get(upload_id)
        # Complete and failed uploads no longer need their chunk file; a file
        # survives there only when a worker died between two steps.
        if upload is None or upload.status in (EXPIRED, COMPLETE, FAILED):
            if chunks.delete(upload_id):
                result.orphans += 1
                if upload is None or upload.status == EXPIRED:
                    signals.send(signals.upload_expired, upload_id=upload_id)
    if result.expired or result.orphans:
        logger.info("chunky_redis: sweep: %s", result)
    return result
