from django.apps import AppConfig


class SupportConfig(AppConfig):
    name = "tests.support"
    label = "chunky_test_support"

    def ready(self) -> None:
        import os
        from pathlib import Path

        from . import receivers  # noqa: F401

        if os.environ.get("CHUNKY_TEST_LOSE_REPLY"):
            from . import lost_reply

            lost_reply.install(Path(os.environ["CHUNKY_TEST_LOSE_REPLY"]))
