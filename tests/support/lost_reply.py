"""For real worker processes: the reply of the script that finishes an upload is lost.

With CHUNKY_TEST_LOSE_REPLY naming a file that does not exist yet, the first
status change to ``complete`` in any process of the test runs its script in
Redis, then raises the TimeoutError of a black-holed link instead of returning
the reply (the store wraps it into StoreUnavailable, as it would a real one).
Creating the file makes it happen once across the worker's children.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import redis

from chunky_redis.core.records import COMPLETE
from chunky_redis.core.store import UploadStore


def _first_time(marker: Path) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def install(marker: Path) -> None:
    real_init = UploadStore.__init__

    def init(self: UploadStore, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        script = self._transition

        def transition(*, keys: list[str], args: list[Any], client: Any = None) -> Any:
            result = script(keys=keys, args=args)
            if args[1] == COMPLETE and result == b"ok" and _first_time(marker):
                raise redis.TimeoutError("Timeout reading from socket (the test lost the reply)")
            return result

        self._transition = transition  # type: ignore[assignment]

    UploadStore.__init__ = init  # type: ignore[method-assign]
