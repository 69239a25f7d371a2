from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from chunky_redis.processing.completion import retry_failed
from chunky_redis.runtime import get_store


class Command(BaseCommand):
    help = (
        "Finalize failed uploads again: their bytes are kept until the record's "
        "retention (CHUNKY_REDIS_COMPLETED_RETENTION) ends."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("upload_ids", nargs="*", metavar="upload_id")
        parser.add_argument(
            "--all-failed", action="store_true", help="Retry every failed upload still kept."
        )

    def handle(self, *args: Any, upload_ids: list[str], all_failed: bool, **options: Any) -> None:
        if bool(upload_ids) == all_failed:
            raise CommandError("Give upload ids, or --all-failed.")
        store = get_store()
        ids = store.failed_ids() if all_failed else upload_ids
        refused = 0
        for upload_id in ids:
            answer = retry_failed(upload_id, store=store)
            self.stdout.write(f"{upload_id}: {answer}")
            refused += answer != "queued"
        if refused and not all_failed:
            raise CommandError(f"{refused} upload(s) could not be retried.")
