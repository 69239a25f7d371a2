"""Celery tasks. Any Celery app that autodiscovers tasks in INSTALLED_APPS finds these."""

from __future__ import annotations

import logging

from celery import shared_task

from .conf import conf
from .exceptions import StoreUnavailable
from .finalize import FinalizeBusy, fail_upload, finalize
from .sweeper import purge_expired_uploads as sweep

logger = logging.getLogger("chunky_redis")

# Errors worth another try: Redis or the storage hiccuped.
TRANSIENT = (StoreUnavailable, OSError)


@shared_task(
    bind=True,
    name="chunky_redis.finalize_upload",
    acks_late=True,  # a task lost with a killed worker is delivered again ...
    reject_on_worker_lost=True,  # ... instead of being acknowledged as failed
    max_retries=None,
)
def finalize_upload(self, upload_id: str) -> str:
    """Verify, move to the final storage, mark complete and send the signals. Idempotent."""
    try:
        return finalize(upload_id).status
    except FinalizeBusy as e:
        # Another worker is finalizing it, or died doing so and its lease will
        # lapse: wait and look again, without ever giving up on the upload.
        raise self.retry(exc=e, countdown=_busy_countdown()) from e
    except TRANSIENT as e:
        if self.request.retries >= conf.FINALIZE_MAX_RETRIES:
            logger.error("chunky_redis: giving up on upload %s: %s", upload_id, e)
            return fail_upload(upload_id, f"Post-processing kept failing: {e}").status
        countdown = min(2 ** self.request.retries, 300)
        raise self.retry(exc=e, countdown=countdown) from e


@shared_task(name="chunky_redis.purge_expired_uploads")
def purge_expired_uploads() -> str:
    return str(sweep())


def _busy_countdown() -> float:
    return max(1.0, min(conf.FINALIZE_LEASE.total_seconds() / 4, 30.0))
