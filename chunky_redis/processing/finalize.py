"""Turning a verified upload into a file in the final storage.

Runs in the Celery worker; the task layer (jobs.py) gives it the store, the
chunk storage and the final storage. Every step is safe to repeat, so a redelivered or
duplicated task finishes the same upload at most once: a lease in Redis keeps
two workers from running the steps at the same time, and the status moves
processing -> complete (or failed) in one atomic step, whose winner alone sends
the signals (finished_signals.py: a retry of the winning task sends them should
the step's reply have been lost).
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.files.storage import Storage

from ..chunk_storages import get_final_storage
from ..conf import conf, milliseconds
from ..core.checksums import ResumableHash
from ..core.storage import ChunkStorage
from ..core.store import COMPLETE, FAILED, PROCESSING, Upload, UploadStore
from . import concat
from .finished_signals import PENDING, new_run_id, owed_to, send_finished
from .handoff import ChunkFile, final_name_for, is_name_refused
from .handoff import hand_off as _hand_off

logger = logging.getLogger("chunky_redis")

__all__ = ["FinalizeBusy", "Outcome", "fail_upload", "final_name_for", "finalize", "retry_failed"]


class FinalizeBusy(Exception):
    """Another worker holds the finalization lease; try again in ``retry_in`` seconds."""

    def __init__(self, upload_id: str, retry_in: float):
        super().__init__(upload_id)
        self.retry_in = retry_in


@dataclass
class Outcome:
    status: str  # "complete", "failed", or "skipped" (nothing to do)
    reason: str = ""
    # ms from the upload's queueing (its queued stamp) to this attempt's start, when the
    # attempt took the lease and ran (the metrics' queue delay); None otherwise. A measurement,
    # not part of what the outcome is.
    waited_ms: int | None = field(default=None, compare=False)


def finalize(
    upload_id: str,
    *,
    store: UploadStore,
    chunks: ChunkStorage,
    final: Storage,
    run_id: str,
) -> Outcome:
    """Finalize the upload as run ``run_id`` (the Celery task id: the same for every
    retry of one task), or send the signals this run owes for finishing it."""
    started = store.now()
    upload = store.get(upload_id)
    if upload is None:
        return Outcome("skipped", "missing")
    if upload.status != PROCESSING and not owed_to(upload, run_id):
        return Outcome("skipped", upload.status)

    lease = _Lease(store, upload_id, milliseconds(conf.FINALIZE_LEASE))
    if not lease.take():
        # Look again once the holder's lease would have lapsed, had it died.
        raise FinalizeBusy(upload_id, max(0.5, store.lease_ttl_ms(upload_id) / 1000 + 0.25))
    try:
        if upload.status != PROCESSING:
            return _send_owed(store, upload_id, run_id)
        outcome = _finalize_under_lease(upload, store, chunks, final, run_id)
    finally:
        lease.drop()
    if outcome.status != "skipped" and upload.queued:  # (a record from before the stamp has none)
        outcome.waited_ms = max(0, started - upload.queued)
    return outcome


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


def _send_owed(store: UploadStore, upload_id: str, run_id: str) -> Outcome:
    """Send the signals run ``run_id`` owes for finishing the upload, if it still does."""
    upload = store.get(upload_id)  # read again: a twin run may have sent them meanwhile
    if upload is None or not owed_to(upload, run_id):
        return Outcome("skipped", upload.status if upload else "missing")
    send_finished(upload, store)
    return Outcome(upload.status, upload.reason)


def _finalize_under_lease(
    upload: Upload,
    store: UploadStore,
    chunks: ChunkStorage,
    final: Storage | None = None,
    run_id: str = "",
) -> Outcome:
    run_id = run_id or new_run_id()
    if final is None:  # (the configured one, for callers that hold an upload already)
        final = get_final_storage()
    reason = concat.assemble(upload, store, chunks, final)
    if reason:
        return _fail(upload, store, reason, run_id)
    if chunks.exists(upload.upload_id):
        if (chunks.size(upload.upload_id) or 0) >= upload.size:
            # Before the verification: the S3 chunk storage reads its bytes back only once
            # their length is sealed (a short file is never extended: the check reports it).
            chunks.truncate(upload.upload_id, upload.size)
        reason = _verify(upload, chunks)
        if reason:
            return _fail(upload, store, reason, run_id)
        name = _hand_off_named(upload, ChunkFile(chunks, upload.upload_id), final)
    else:
        # A previous attempt handed the file off and died before recording it?
        names = [final_name_for(upload, final), final_name_for(upload, final, safe=True)]
        found = [n for n in names if final.exists(n)]
        if not found:
            reason = "The uploaded bytes are missing from the upload directory."
            return _fail(upload, store, reason, run_id)
        name = found[0]

    try:
        url = final.url(name)
    except NotImplementedError:
        url = ""
    fields = {"final_name": name, "final_url": url, "completed": store.now(), "hash_state": b""}
    outcome = _finish(upload.upload_id, store, run_id, COMPLETE, fields)
    if outcome.status == COMPLETE:
        concat.remove_parts(upload, store, chunks)
    return outcome


def _finish(
    upload_id: str, store: UploadStore, run_id: str, status: str, fields: dict[str, Any]
) -> Outcome:
    """processing -> ``status`` with ``fields``, once; the run that wins sends the signals.

    Read back, whoever won: a client that retried a command whose reply it lost runs
    the script twice, and the second run answers with the status the first one set.
    """
    store.transition(
        upload_id,
        PROCESSING,
        status,
        keep_ms=store.completed_retention_ms,
        signal_run=run_id,
        signal_state=PENDING,
        **fields,
    )
    return _send_owed(store, upload_id, run_id)


def _verify(upload: Upload, chunks: ChunkStorage) -> str:
    """'' when the stored bytes are what the client's checksum says, else the reason."""
    stored = chunks.size(upload.upload_id) or 0
    if stored < upload.size:
        return f"The upload directory holds {stored} of the {upload.size} bytes received."
    if upload.hash_state and not conf.VERIFY_STORED_BYTES:
        digest = ResumableHash(upload.algorithm, upload.hash_state).hexdigest()
        what = "received bytes"
    else:
        digest = chunks.digest(upload.upload_id, upload.algorithm, upload.size)
        what = "stored bytes"
    if not hmac.compare_digest(digest, upload.checksum):
        return (
            f"The {upload.algorithm} of the {what} ({digest}) "
            f"does not match the client's ({upload.checksum})."
        )
    return ""


def _hand_off_named(upload: Upload, chunk: ChunkFile, final: Storage) -> str:
    """Hand off under the client's name; should the storage refuse that name
    (too long, characters it cannot store), under a safe one: no filename
    can fail an upload."""
    name = final_name_for(upload, final)
    try:
        return _hand_off(chunk, final, name)
    except Exception as e:
        safe = final_name_for(upload, final, safe=True)
        if not is_name_refused(e) or safe == name:
            raise
        logger.warning(
            "chunky_redis: the final storage refused the name of upload %s (%s); storing it as %s",
            upload.upload_id,
            public_reason(e),
            safe,
        )
        return _hand_off(chunk, final, safe)


def _fail(upload: Upload, store: UploadStore, reason: str, run_id: str) -> Outcome:
    """processing -> failed, once. The bytes stay in the upload directory until the
    record's retention ends, so that ``manage.py chunky_retry`` can try again."""
    fields = {"reason": reason, "completed": store.now()}
    return _finish(upload.upload_id, store, run_id, FAILED, fields)


# An absolute path in an error message: the server's layout is nobody else's business.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/[^\s'\"]*")


def public_reason(error: BaseException) -> str:
    """What to tell the client about ``error``: never a path of the server."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = _ABSOLUTE_PATH.sub("<path>", str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def fail_upload(upload_id: str, reason: str, *, store: UploadStore, run_id: str) -> Outcome:
    """Fail an upload stuck in processing (the task ``run_id`` gave up after its
    retries), or send the signals that run owes for having finished it."""
    upload = store.get(upload_id)
    if upload is not None and owed_to(upload, run_id):
        return _send_owed(store, upload_id, run_id)
    if upload is None or upload.status != PROCESSING:
        return Outcome("skipped")
    return _fail(upload, store, reason, run_id)


def retry_failed(
    upload_id: str,
    *,
    store: UploadStore,
    chunks: ChunkStorage,
    final: Storage,
    enqueue: Callable[[str], None],
) -> str:
    """failed -> processing, and queue the finalization again with ``enqueue``.

    Returns "queued", or why not: "missing" (the record's retention is over),
    "no_bytes" (the chunk file is gone), or the upload's status.
    """
    upload = store.get(upload_id)
    if upload is None:
        return "missing"
    if upload.status != FAILED:
        return upload.status
    handed_off = any(
        final.exists(final_name_for(upload, final, safe=safe)) for safe in (False, True)
    )
    if not chunks.exists(upload_id) and not handed_off:
        return "no_bytes"
    store.index_status(upload_id, PROCESSING)  # first: a lost reply leaves it findable
    won = store.transition(
        upload_id, FAILED, PROCESSING, reason="", completed=0, queued=store.now()
    )
    if won != "ok":
        return won  # (the sweeper drops the index entry)
    enqueue(upload_id)
    return "queued"
