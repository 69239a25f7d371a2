"""Turning a verified upload into a file in the final storage.

Runs in the Celery worker. Every step is safe to repeat, so a redelivered or
duplicated task finishes the same upload at most once: a lease in Redis keeps
two workers from running the steps at the same time, and the status moves
processing -> complete (or failed) in one atomic step, whose winner alone sends
the signals.
"""

from __future__ import annotations

import errno
import hmac
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from django.core.exceptions import SuspiciousFileOperation
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.core.files.utils import validate_file_name
from django.utils.module_loading import import_string

from . import signals
from .checksums import ResumableHash, file_hexdigest
from .conf import conf, milliseconds
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


def final_name_for(upload: Upload, storage: Storage) -> str:
    """The upload's name in the final storage: the same for every attempt.

    The client's filename is cleaned the way the storage cleans FileField names,
    so that names like ".." can never leave the upload's own folder.
    """
    try:
        filename = (
            storage.get_valid_name(os.path.basename(upload.filename))
            if upload.filename  # pragma: no mutate (an empty name is refused below: "upload")
            else "upload"
        )
    except SuspiciousFileOperation:
        filename = "upload"
    name = conf.FINAL_NAME_TEMPLATE.format(upload_id=upload.upload_id, filename=filename)
    validate_file_name(name, allow_relative_path=True)
    return name


def finalize(
    upload_id: str, *, store: UploadStore | None = None, chunks: ChunkStorage | None = None
) -> Outcome:
    store = store or get_store()
    chunks = chunks or get_storage()
    upload = store.get(upload_id)
    if upload is None or upload.status != PROCESSING:
        return Outcome("skipped", upload.status if upload else "missing")

    lease = _Lease(store, upload_id, milliseconds(conf.FINALIZE_LEASE))
    if not lease.take():
        raise FinalizeBusy(upload_id)
    try:
        return _finalize_under_lease(upload, store, chunks)
    finally:
        lease.drop()


class _Lease:
    """The finalization lease, renewed in the background while this worker works.

    A long hand-off (a large file to a remote storage) keeps the lease however
    long it takes; a killed worker stops renewing it, so it lapses after
    FINALIZE_LEASE and a redelivered task can take over.
    """

    def __init__(self, store: UploadStore, upload_id: str, ttl_ms: int):
        self.store, self.upload_id, self.ttl_ms = store, upload_id, ttl_ms
        self.token = secrets.token_hex(16)  # pragma: no mutate (any unguessable length will do)
        self._stop = threading.Event()
        # (drop() runs only after take() set the thread, so its initial value is never read)
        self._thread: threading.Thread | None = None  # pragma: no mutate

    def take(self) -> bool:
        if not self.store.take_lease(self.upload_id, self.token, self.ttl_ms):
            return False
        self._thread = threading.Thread(
            target=self._renew, name=f"chunky-lease-{self.upload_id}", daemon=True
        )
        self._thread.start()
        return True

    def _renew(self) -> None:
        # Renew every third of the lease (a mutant's 1/3001 is the same schedule).
        while not self._stop.wait(self.ttl_ms / 3000):  # pragma: no mutate
            try:
                if not self.store.extend_lease(self.upload_id, self.token, self.ttl_ms):
                    logger.warning(
                        "chunky_redis: lost the finalization lease of upload %s", self.upload_id
                    )
                    return
            except Exception:  # Redis hiccup: try again at the next beat, the lease has time left
                logger.warning(
                    "chunky_redis: cannot renew the lease of upload %s",
                    self.upload_id,
                    exc_info=True,
                )

    def drop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.store.drop_lease(self.upload_id, self.token)


def _finalize_under_lease(upload: Upload, store: UploadStore, chunks: ChunkStorage) -> Outcome:
    final = get_final_storage()
    name = final_name_for(upload, final)
    path = chunks.path(upload.upload_id)
    if os.path.exists(path):
        reason = _verify(upload, path)
        if reason:
            return _fail(upload, store, chunks, reason)
        chunks.truncate(upload.upload_id, upload.size)
        name = _hand_off(path, final, name)
    elif not final.exists(name):
        return _fail(
            upload, store, chunks, "The uploaded bytes are missing from the upload directory."
        )
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
        keep_ms=store.completed_retention_ms,
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
    signals.send(
        signals.chunky_upload_complete, upload_id=upload.upload_id, completed_on=completed_on
    )
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
        return (
            f"The {upload.algorithm} of the {what} ({digest}) "
            f"does not match the client's ({upload.checksum})."
        )
    return ""


def _hand_off(path: str, final: Storage, name: str) -> str:
    """Move the chunk file into the final storage; returns the stored name.

    The name contains the upload id, so it is ours alone: a partial file left
    there by a dead attempt is replaced, never kept beside a renamed copy.
    """
    if _can_rename(final, path):
        target = final.path(name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.replace(path, target)  # atomic on one volume: no copy, no window
        except OSError as e:
            # Two mounts of one filesystem (Docker volumes, Kubernetes subPath) share
            # st_dev yet refuse a rename between them: save through the storage instead.
            if e.errno != errno.EXDEV:
                raise
        else:
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
        keep_ms=store.completed_retention_ms,
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
