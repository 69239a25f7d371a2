"""What a host app does with finished uploads: here, log them.

These receivers run in the Celery worker (or in the web process when tasks are
eager), which is where chunky_redis sends its signals.
"""

import logging

from django.dispatch import receiver

from chunky_redis.signals import upload_completed, upload_expired, upload_failed

logger = logging.getLogger("chunky_site")


@receiver(upload_completed)
def log_completed(upload_id, filename, size, checksum_algorithm, checksum, final_name, **kwargs):
    logger.info(
        "upload %s complete: %r, %d bytes, %s %s, stored as %s",
        upload_id,
        filename,
        size,
        checksum_algorithm,
        checksum,
        final_name,
    )


@receiver(upload_failed)
def log_failed(upload_id, reason, **kwargs):
    logger.warning("upload %s failed: %s", upload_id, reason)


@receiver(upload_expired)
def log_expired(upload_id, **kwargs):
    logger.info("upload %s expired and was swept", upload_id)
