"""Settings for real server and worker processes started by the tests.

The bundled site's settings, plus the test receivers (which log signals to
CHUNKY_TEST_SIGNAL_LOG) and per-test isolation of Redis keys and Celery queues.
"""

import os

from chunky_site.settings import *  # noqa: F401,F403
from chunky_site.settings import CELERY_BROKER_URL, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.support"]
ALLOWED_HOSTS = ["*"]
CHUNKY_REDIS_KEY_PREFIX = os.environ.get("CHUNKY_TEST_KEY_PREFIX", "chunky")
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CHUNKY_TEST_QUEUE", "celery")
if os.environ.get("CHUNKY_TEST_FINALIZE_LEASE"):
    CHUNKY_REDIS_FINALIZE_LEASE = float(os.environ["CHUNKY_TEST_FINALIZE_LEASE"])
if os.environ.get("CHUNKY_TEST_FINAL_STORAGE"):
    CHUNKY_REDIS_FINAL_STORAGE = os.environ["CHUNKY_TEST_FINAL_STORAGE"]
if os.environ.get("CHUNKY_TEST_S3_ENDPOINT"):  # the local S3 of tests/support/s3.py
    from tests.support.s3 import LocalS3

    _s3 = LocalS3(port=int(os.environ["CHUNKY_TEST_S3_ENDPOINT"].rsplit(":", 1)[1]))
    globals().update(_s3.django_settings(os.environ["CHUNKY_TEST_S3_BUCKET"]))
    AWS_LOCATION = os.environ.get("CHUNKY_TEST_S3_LOCATION", "")
if os.environ.get("CHUNKY_TEST_VERIFY_STORED_BYTES"):
    CHUNKY_REDIS_VERIFY_STORED_BYTES = True
if os.environ.get("CHUNKY_TEST_SWEEP_INTERVAL"):
    CHUNKY_REDIS_SWEEP_INTERVAL = float(os.environ["CHUNKY_TEST_SWEEP_INTERVAL"])
if os.environ.get("CHUNKY_TEST_ORPHAN_GRACE"):
    CHUNKY_REDIS_ORPHAN_GRACE = float(os.environ["CHUNKY_TEST_ORPHAN_GRACE"])

if CELERY_BROKER_URL.startswith("redis"):
    # Every kombu key of this test (queues, bindings, the unacked index) under
    # the test's own prefix: a short visibility timeout here then restores only
    # this test's messages, never those of other tests sharing the database.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "global_keyprefix": f"{CELERY_TASK_DEFAULT_QUEUE}:",
        **globals().get("CELERY_BROKER_TRANSPORT_OPTIONS", {}),
    }
    if os.environ.get("CELERY_VISIBILITY_TIMEOUT"):
        # Look for messages of dead workers every second, not every 100 s.
        CELERY_BROKER_TRANSPORT_OPTIONS.update(
            unacked_restore_interval=1, unacked_restore_throttle=1
        )
