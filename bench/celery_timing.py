"""``celery -A bench.celery_timing worker``: the bundled Celery app, plus one JSON line per task.

The scaling workload needs each finalization's start and end on the same clock as the record's
``queued`` (wall-clock milliseconds; Redis and the worker share the host), without touching
chunky_redis: Celery's own task_prerun/task_postrun signals give both. The file is
``CHUNKY_BENCH_TIMINGS``; each worker process appends whole lines (O_APPEND).
"""

from __future__ import annotations

import json
import os
import time

from celery.signals import task_postrun, task_prerun

from tasks import app

__all__ = ["app"]

_started: dict[str, float] = {}


@task_prerun.connect
def _prerun(task_id=None, args=None, **_) -> None:
    _started[task_id] = time.time()


@task_postrun.connect
def _postrun(task_id=None, task=None, args=None, retval=None, **_) -> None:
    path = os.environ.get("CHUNKY_BENCH_TIMINGS")
    start = _started.pop(task_id, None)
    if not path or start is None or task is None or task.name != "chunky_redis.finalize_upload":
        return
    line = {
        "upload_id": (args or [""])[0],
        "start_ms": start * 1000,
        "end_ms": time.time() * 1000,
        "status": str(retval),
        "pid": os.getpid(),
    }
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
