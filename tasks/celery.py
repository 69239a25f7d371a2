import os
import sys
from datetime import timedelta
from pathlib import Path

from celery import Celery

# The bundled site lives in deploy/; make it importable when run from the repository.
_DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
if _DEPLOY.is_dir() and str(_DEPLOY) not in sys.path:
    sys.path.insert(0, str(_DEPLOY))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chunky_site.settings")

app = Celery("chunky_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # finds chunky_redis.tasks, as a host project's own app would


@app.on_after_finalize.connect
def _schedule_sweeper(sender: Celery, **kwargs: object) -> None:
    from chunky_redis.conf import conf

    interval: timedelta = conf.SWEEP_INTERVAL
    sender.add_periodic_task(interval.total_seconds(), sender.tasks["chunky_redis.purge_expired_uploads"].s(),
                             name="chunky_redis: purge expired uploads")
