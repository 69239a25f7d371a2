from django.apps import AppConfig

from . import (
    checks,  # noqa: F401  (registers the system checks)
    runtime,
)
from .processing import completion, metering
from .protocols import chunky  # noqa: F401  (ChunkyError.status_code answers as this dialect)


class ChunkyRedisConfig(AppConfig):
    name = "chunky_redis"
    verbose_name = "Chunky Redis uploads"

    def ready(self) -> None:
        # The upload service hands completed uploads to the Celery finalization:
        # injected here, so that neither runtime nor the dialects import the processing.
        runtime.set_completion_handler(completion.on_complete)
        # The metrics' receivers (they count nothing while CHUNKY_REDIS_METRICS is off).
        metering.connect()
