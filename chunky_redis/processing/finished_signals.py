"""The signals of a finished upload, sent by the run that finished it, once.

The status change processing -> complete (or failed) records, in the same
script, which run made it (``signal_run``: the Celery task id, the same across
the task's retries and redeliveries) and ``signal_state = "pending"``. That run
sends the signals, then records ``"sent"``. Should the script's reply be lost
(Redis unreachable just after it ran) or the worker die before the signals went
out, the retry of the same task finds the upload finished by its own run with
the signals pending, and sends them. A run with another id (a duplicate task,
one queued by the sweeper or ``chunky_retry``) never sends them.

At least once rather than at most once: the signals go out before "sent" is
recorded, so a worker that dies between the receivers' return and that record
has the signals sent again by its redelivered task. The other order (claim,
then send) would lose them when the claim's reply is lost or the worker dies
after it, and a host application that never hears of an upload cannot find
out; one that hears twice can tell by the upload id.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timezone

from ..core.errors import StoreUnavailable
from ..core.store import COMPLETE, FAILED, Upload, UploadStore
from . import signals

logger = logging.getLogger("chunky_redis")

PENDING = "pending"
SENT = "sent"


def new_run_id() -> str:
    """An id for a run that has none from Celery (a direct call): its own, never retried."""
    return secrets.token_hex(16)  # pragma: no mutate (any unguessable length will do)


def owed_to(upload: Upload, run_id: str) -> bool:
    """Did run ``run_id`` finish the upload without its signals having gone out?"""
    return (
        upload.status in (COMPLETE, FAILED)
        and upload.signal_run == run_id
        and upload.signal_state == PENDING
    )


def send_finished(upload: Upload, store: UploadStore) -> None:
    """Index the finished upload, send its signals, and record that they were sent."""
    store.index_status(upload.upload_id, upload.status)
    if upload.status == COMPLETE:
        signals.send(
            signals.upload_completed,
            upload_id=upload.upload_id,
            filename=upload.filename,
            size=upload.size,
            checksum_algorithm=upload.algorithm,
            checksum=upload.checksum,
            final_name=upload.final_name,
            final_url=upload.final_url,
            user_id=upload.owner or None,
            extra=upload.extra,
        )
        completed_on = datetime.fromtimestamp(upload.completed / 1000, tz=timezone.utc)
        signals.send(
            signals.chunky_upload_complete, upload_id=upload.upload_id, completed_on=completed_on
        )
    else:
        logger.warning("chunky_redis: upload %s failed: %s", upload.upload_id, upload.reason)
        signals.send(signals.upload_failed, upload_id=upload.upload_id, reason=upload.reason)
    try:
        store.signals_sent(upload.upload_id, upload.status, upload.signal_run)
    except StoreUnavailable:
        # Sent: raising would have the task retried and send them again. Only a
        # redelivery of this task (the worker died before acknowledging it) does.
        logger.warning(
            "chunky_redis: cannot record that the signals of upload %s were sent",
            upload.upload_id,
            exc_info=True,
        )
