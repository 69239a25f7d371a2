from django.apps import AppConfig


class ChunkyRedisConfig(AppConfig):
    name = "chunky_redis"
    verbose_name = "Chunky Redis uploads"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
