from typing import Any

from django.core.management.base import BaseCommand

from chunky_redis.processing.completion import purge_expired_uploads


class Command(BaseCommand):
    help = "Delete the chunk files of expired uploads and orphan files; send upload_expired."

    def handle(self, *args: Any, **options: Any) -> None:
        result = purge_expired_uploads()
        self.stdout.write(str(result))
