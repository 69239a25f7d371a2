from django.apps import AppConfig


class SupportConfig(AppConfig):
    name = "tests.support"
    label = "chunky_test_support"

    def ready(self) -> None:
        from . import receivers  # noqa: F401
