"""Celery tasks. Any Celery app that autodiscovers tasks in INSTALLED_APPS finds these.

Both run in the worker; so do the receivers of the signals they send.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task

from ..conf import conf
from . import jobs, metering
from .finalize import FinalizeBusy, public_reason
from .finished_signals import new_run_id

logger = logging.getLogger("chunky_redis")


def enqueue_finalize(upload_id: str) -> None:
    """Queue ``finalize_upload`` for the upload (run inline when Celery is eager)."""
    options: dict[str, Any] = {"queue": conf.TASK_QUEUE} if conf.TASK_QUEUE else {}
    finalize_upload.apply_async(args=(upload_id,), **options)


@shared_task(
    bind=True,
    name="chunky_redis.finalize_upload",
    acks_late=True,  # a task lost with a killed worker is delivered again ...
    reject_on_worker_lost=True,  # ... instead of being acknowledged as failed
    max_retries=None,  # our own counter decides when to give up (below)
)
def finalize_upload(self: Task[Any, Any], upload_id: str) -> str:
    """Verify, move to the final storage, mark complete and send the signals. Idempotent.

    Returns "complete", "failed", "skipped" (already finished, or gone) or "busy".
    """
    # The same for every retry and redelivery of this task: the run that finishes the
    # upload owes its signals, and a retry sends them if the first try could not.
    run_id = self.request.id or new_run_id()
    if self.request.is_eager:
        return _finalize_inline(upload_id, run_id)
    try:
        return jobs.finalize(upload_id, run_id=run_id).status
    except FinalizeBusy as e:
        # Another worker is finalizing it, or died doing so: look again just
        # after its lease would lapse (it is renewed while its holder lives),
        # without ever giving up on the upload.
        raise self.retry(exc=e, countdown=e.retry_in) from e
    except Exception as e:
        # Redis, the storage or the network hiccuped (or a bug): every step is
        # safe to repeat, so try again with backoff, then fail the upload
        # visibly rather than leave it in "processing" forever.
        if self.request.retries >= conf.FINALIZE_MAX_RETRIES:
            logger.exception("chunky_redis: giving up on upload %s", upload_id)
            reason = f"Post-processing kept failing: {public_reason(e)}"
            return jobs.fail_upload(upload_id, reason, run_id=run_id).status
        countdown = min(2**self.request.retries, 300)
        logger.warning(
            "chunky_redis: finalizing upload %s failed (%s); retrying in %ss",
            upload_id,
            e,
            countdown,
        )
        raise self.retry(exc=e, countdown=countdown) from e


def _finalize_inline(upload_id: str, run_id: str) -> str:
    """Eager mode (no broker): the same steps, retried at once instead of later."""
    for attempt in range(conf.FINALIZE_MAX_RETRIES + 1):
        try:
            return jobs.finalize(upload_id, run_id=run_id).status
        except FinalizeBusy:
            return "busy"  # another thread or process holds the lease and finishes it
        except Exception as e:
            if attempt == conf.FINALIZE_MAX_RETRIES:
                logger.exception("chunky_redis: giving up on upload %s", upload_id)
                reason = f"Post-processing kept failing: {public_reason(e)}"
                return jobs.fail_upload(upload_id, reason, run_id=run_id).status
            logger.warning(
                "chunky_redis: finalizing upload %s failed (%s); trying again", upload_id, e
            )
    raise AssertionError("unreachable")


@shared_task(name="chunky_redis.purge_expired_uploads")
def purge_expired_uploads() -> str:
    """The expiry sweeper; the bundled beat schedule runs it every CHUNKY_REDIS_SWEEP_INTERVAL."""
    try:
        return str(jobs.purge_expired_uploads(enqueue=enqueue_finalize))
    except Exception as e:
        metering.count_error(e)  # a Redis or storage error, for the metrics when they are on
        raise
