"""The bundled chunky_redis site. Importing it loads the Celery app of tasks/, so that
tasks sent from the web process use the configured broker (or run eagerly)."""

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent.parent
if (_REPO / "tasks").is_dir() and str(_REPO) not in sys.path:
    sys.path.append(str(_REPO))

from tasks import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
