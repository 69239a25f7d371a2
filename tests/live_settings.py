"""Settings for real server and worker processes started by the tests.

The bundled site's settings, plus the test receivers (which log signals to
CHUNKY_TEST_SIGNAL_LOG) and per-test isolation of Redis keys and Celery queues.
"""

import os

from chunky_site.settings import *  # noqa: F401,F403
from chunky_site.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.support"]
ALLOWED_HOSTS = ["*"]
CHUNKY_REDIS_KEY_PREFIX = os.environ.get("CHUNKY_TEST_KEY_PREFIX", "chunky")
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CHUNKY_TEST_QUEUE", "celery")
if os.environ.get("CHUNKY_TEST_FINALIZE_LEASE"):
    CHUNKY_REDIS_FINALIZE_LEASE = float(os.environ["CHUNKY_TEST_FINALIZE_LEASE"])
if os.environ.get("CHUNKY_TEST_FINAL_STORAGE"):
    CHUNKY_REDIS_FINAL_STORAGE = os.environ["CHUNKY_TEST_FINAL_STORAGE"]
if os.environ.get("CHUNKY_TEST_VERIFY_STORED_BYTES"):
    CHUNKY_REDIS_VERIFY_STORED_BYTES = True
