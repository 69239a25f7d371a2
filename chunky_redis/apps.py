from django.apps import AppConfig
from django.core.signals import setting_changed

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
        # The views share one service per process, built from the settings: a changed setting
        # (override_settings in tests) rebuilds it.
        setting_changed.connect(runtime.forget_shared_service, dispatch_uid="chunky_redis.runtime")
