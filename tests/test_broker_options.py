"""The bundled site's Celery broker options (a Redis broker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.live  # it starts a Python process per case

ROOT = Path(__file__).resolve().parent.parent

# kombu's default visibility timeout, used when CELERY_VISIBILITY_TIMEOUT is unset.
KOMBU_VISIBILITY_TIMEOUT = 3600


def transport_options(module: str, **env: str) -> dict:
    """CELERY_BROKER_TRANSPORT_OPTIONS and the finalization lease, as a fresh process reads them."""
    code = (
        f"import json, {module} as s;"
        "print(json.dumps([s.CELERY_BROKER_TRANSPORT_OPTIONS,"
        " getattr(s, 'CHUNKY_REDIS_FINALIZE_LEASE', 30)]))"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    environ.update(PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'deploy'}", **env)
    out = subprocess.run(
        [sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("module", ["chunky_site.settings", "tests.live_settings"])
@pytest.mark.parametrize("visibility", ["", "7200"])
def test_a_dead_workers_restore_mutex_lapses_within_seconds(module, visibility):
    """A worker killed while holding kombu's unacked mutex blocked every redelivery
    for kombu's default 300 s (the fault suite's celery-kill row)."""
    env = {
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        "SECRET_KEY": "a-test-key-" + "x" * 40,
        "CELERY_VISIBILITY_TIMEOUT": visibility,
    }
    options, lease = transport_options(module, **env)
    assert 0 < options["unacked_mutex_expire"] <= 10
    # A message is delivered again only after the visibility timeout: it must outlast
    # the finalization lease, or a live worker's task is delivered to a second one.
    assert options.get("visibility_timeout", KOMBU_VISIBILITY_TIMEOUT) > 2 * lease
    if visibility:
        assert options["visibility_timeout"] == float(visibility)
