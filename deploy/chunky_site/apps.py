from django.apps import AppConfig


class ChunkySiteConfig(AppConfig):
    name = "chunky_site"
    verbose_name = "The bundled chunky_redis site"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects the example signal receivers)
