"""The bundled site's settings, with the benchmark run's own Redis key prefix and Celery queue."""

import os

from chunky_site.settings import *  # noqa: F401,F403

ALLOWED_HOSTS = ["*"]
CHUNKY_REDIS_KEY_PREFIX = os.environ["CHUNKY_BENCH_KEY_PREFIX"]
CELERY_TASK_DEFAULT_QUEUE = os.environ["CHUNKY_BENCH_QUEUE"]
# bench.cpucost --variant NAME:CHUNKY_BENCH_BLOCK_SIZE=N
if os.environ.get("CHUNKY_BENCH_BLOCK_SIZE"):
    CHUNKY_REDIS_BLOCK_SIZE = int(os.environ["CHUNKY_BENCH_BLOCK_SIZE"])
