"""``celery -A tasks worker`` and ``celery -A tasks beat`` for the bundled site.

Configured from the Django settings (``CELERY_*``). A host project's own Celery
app needs nothing more than ``app.autodiscover_tasks()`` to find the tasks in
``chunky_redis.tasks``, plus a beat entry for the sweeper like the one below.
"""

import os
import sys
from datetime import timedelta
from pathlib import Path

from celery import Celery
from celery.beat import PersistentScheduler

from chunky_redis.processing.celery_compat import patch_kombu_redis

# A worker must ride out a Redis restart instead of exiting: see chunky_redis/processing/celery_compat.py.
patch_kombu_redis()

# The bundled site lives in deploy/; make it importable when run from the repository.
_DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
if _DEPLOY.is_dir() and str(_DEPLOY) not in sys.path:
    sys.path.insert(0, str(_DEPLOY))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chunky_site.settings")
# Prometheus multiprocess mode (docs/howto/metrics.md): the pool processes write their samples here.
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

app = Celery("chunky_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # finds chunky_redis.tasks, as a host project's own app would

SWEEPER = "chunky_redis: purge expired uploads"


class HeartbeatScheduler(PersistentScheduler):
    """Beat's scheduler, touching CELERY_BEAT_HEARTBEAT_FILE at every tick.

    Beat answers no `celery inspect ping`; a liveness probe can tell a beat that still
    schedules by the age of this file (a tick comes at least every beat_max_loop_interval).
    """

    def tick(self, *args: object, **kwargs: object) -> float:
        path = os.environ.get("CELERY_BEAT_HEARTBEAT_FILE")
        if path:
            Path(path).touch()
        return super().tick(*args, **kwargs)


app.conf.beat_scheduler = HeartbeatScheduler


@app.on_after_finalize.connect
def _schedule_sweeper(sender: Celery, **kwargs: object) -> None:
    from chunky_redis.conf import conf

    interval: timedelta = conf.SWEEP_INTERVAL
    sender.add_periodic_task(
        interval.total_seconds(),
        sender.signature("chunky_redis.purge_expired_uploads"),
        name=SWEEPER,
        # A sweep nobody ran before the next one is due is only a duplicate: drop it.
        expires=interval.total_seconds(),
    )
