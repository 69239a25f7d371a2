"""Turning a verified upload into a file in the final storage.

Runs in the Celery worker. Every step is safe to repeat, so a redelivered or
duplicated task finishes the same upload at most once: a lease in Redis keeps
two workers from running the steps at the same time, and the status moves
processing -> complete (or failed) in one atomic step, whose winner alone sends
the signals.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.utils.module_loading import import_string

from . import signals
from .checksums import ResumableHash, file_hexdigest
from .conf import conf
from .runtime import get_storage, get_store
from .storage import ChunkStorage
from .store import COMPLETE, FAILED, PROCESSING, Upload, UploadStore

logger = logging.getLogger("chunky_redis")


class FinalizeBusy(Exception):
    """Another worker holds the finalization lease; try again later."""


@dataclass
class Outcome:
    status: str  # "complete", "failed", or "skipped" (nothing to do)
    reason: str = ""


def get_final_storage() -> Storage:
    name = conf.FINAL_STORAGE
    if not name:
        return storages["default"]
    if "." in name:
        return import_string(name)()
    return storages[name]


def final_name_for(upload: Upload) -> str:
    filename = upload.filename or "upload"
    return conf.FINAL_NAME_TEMPLATE.format(upload_id=upload.upload_id, filename=filename)


def finalize(upload_id: str, *, store: UploadStore | None = None, chunks: ChunkStorage | None = None) -> Outcome:
    store = store or get_store()
    chunks = chunks or get_storage()
    upload = store.get(upload_id)
    if upload is None or upload.status != PROCESSING:
        return Outcome("skipped", upload.status if upload else "missing")

    token = secrets.token_hex(16)
    if not store.take_lease(upload_id, token, int(conf.FINALIZE_LEASE.total_seconds() * 1000)):
        raise FinalizeBusy(upload_id)
    try:
        return _finalize_under_lease(upload, store, chunks)
    finally:
        store.drop_lease(upload_id, token)


def _finalize_under_lease(upload: Upload, store: UploadStore, chunks: ChunkStorage) -> Outcome:
    final = get_final_storage()
    name = final_name_for(upload)
    path = chunks.path(upload.upload_id)
    if os.path.exists(path):
        reason = _verify(upload, path)
        if reason:
            return _fail(upload, store, chunks, reason)
        chunks.truncate(upload.upload_id, upload.size)
        name = _hand_off(path, final, name)
    elif not final.exists(name):
        return _fail(upload, store, chunks, "The uploaded bytes are missing from the upload directory.")
    # else: a previous attempt already handed the file off and died before recording it.

    try:
        url = final.url(name)
    except NotImplementedError:
        url = ""
    completed = store.now()
    won = store.transition(
        upload.upload_id,
        PROCESSING,
        COMPLETE,
        keep_ms=int(conf.COMPLETED_RETENTION.total_seconds() * 1000),
        final_name=name,
        final_url=url,
        completed=completed,
        hash_state="",
    )
    if won != "ok":
        return Outcome("skipped", won)
    completed_on = datetime.fromtimestamp(completed / 1000, tz=timezone.utc)
    signals.send(
        signals.upload_completed,
        upload_id=upload.upload_id,
        filename=upload.filename,
        size=upload.size,
        checksum_algorithm=upload.algorithm,
        checksum=upload.checksum,
        final_name=name,
        final_url=url,
        user_id=upload.owner or None,
        extra=upload.extra,
    )
    signals.send(signals.chunky_upload_complete, upload_id=upload.upload_id, completed_on=completed_on)
    return Outcome(COMPLETE)


def _verify(upload: Upload, path: str) -> str:
    """'' when the stored bytes are what the client's checksum says, else the reason."""
    stored = os.path.getsize(path)
    if stored < upload.size:
        return f"The upload directory holds {stored} of the {upload.size} bytes received."
    if upload.hash_state and not conf.VERIFY_STORED_BYTES:
        digest = ResumableHash(upload.algorithm, upload.hash_state).hexdigest()
        what = "received bytes"
    else:
        digest = file_hexdigest(path, upload.algorithm, upload.size)
        what = "stored bytes"
    if not hmac.compare_digest(digest, upload.checksum):
        return f"The {upload.algorithm} of the {what} ({digest}) does not match the client's ({upload.checksum})."
    return ""


def _hand_off(path: str, final: Storage, name: str) -> str:
    """Move the chunk file into the final storage; returns the stored name.

    The name contains the upload id, so it is ours alone: a partial file left
    there by a dead attempt is replaced, never kept beside a renamed copy.
    """
    if _can_rename(final, path):
        target = final.path(name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(path, target)  # atomic on one volume: no copy, no window
        if final.file_permissions_mode is not None:
            os.chmod(target, final.file_permissions_mode)
        return name
    if final.exists(name):
        final.delete(name)
    with open(path, "rb") as f:
        # Storage.save streams File objects chunk by chunk; nothing is loaded whole.
        stored = final.save(name, File(f, name=os.path.basename(name)))
    os.unlink(path)
    return stored


def _can_rename(final: Storage, path: str) -> bool:
    if not isinstance(final, FileSystemStorage) or type(final)._save is not FileSystemStorage._save:
        return False  # a storage that customises saving must be saved through
    location = final.location
    os.makedirs(location, exist_ok=True)
    return os.stat(location).st_dev == os.stat(path).st_dev


def _fail(upload: Upload, store: UploadStore, chunks: ChunkStorage, reason: str) -> Outcome:
    won = store.transition(
        upload.upload_id,
        PROCESSING,
        FAILED,
        keep_ms=int(conf.COMPLETED_RETENTION.total_seconds() * 1000),
        reason=reason,
        completed=store.now(),
    )
    if won != "ok":
        return Outcome("skipped", won)
    chunks.delete(upload.upload_id)
    logger.warning("chunky_redis: upload %s failed: %s", upload.upload_id, reason)
    signals.send(signals.upload_failed, upload_id=upload.upload_id, reason=reason)
    return Outcome(FAILED, reason)


def fail_upload(upload_id: str, reason: str) -> Outcome:
    """Fail an upload stuck in processing (the task gave up after its retries)."""
    store = get_store()
    upload = store.get(upload_id)
    if upload is None or upload.status != PROCESSING:
        return Outcome("skipped")
    return _fail(upload, store, get_storage(), reason)

