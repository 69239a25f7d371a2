"""Signals sent by the post-processing worker (never inside the web request).

Receivers run in the Celery worker process. A receiver that raises is logged
and does not stop the other receivers or change the upload.
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

logger = logging.getLogger("chunky_redis")

# upload_id, filename, size, checksum_algorithm, checksum, final_name, final_url, user_id, extra
upload_completed = Signal()
# upload_id, completed_on: django-chunky-upload's signal, for receivers written for it
chunky_upload_complete = Signal()
# upload_id, reason
upload_failed = Signal()
# upload_id
upload_expired = Signal()


def send(signal: Signal, **kwargs: object) -> None:
    """Send ``signal`` to every receiver; a receiver that raises is logged, the others still run."""
    for receiver, result in signal.send_robust(sender=None, **kwargs):
        if isinstance(result, Exception):
            logger.error(
                "chunky_redis: receiver %r of %s raised for upload %s",
                receiver,
                _NAMES.get(id(signal), "a signal"),
                kwargs.get("upload_id"),
                exc_info=(type(result), result, result.__traceback__),
            )


_NAMES = {
    id(upload_completed): "upload_completed",
    id(chunky_upload_complete): "chunky_upload_complete",
    id(upload_failed): "upload_failed",
    id(upload_expired): "upload_expired",
}
