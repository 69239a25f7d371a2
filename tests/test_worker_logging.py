"""A real `celery -A tasks worker` of the bundled site prints each log line once.

Django's LOGGING gave the project's loggers a handler of their own while they also
propagated to the root logger, where Celery puts its own handler: every line twice.
"""

from __future__ import annotations

import pytest
from celery import Celery

from tests.support.processes import WorkerProcess, live_env, wait_for

pytestmark = [pytest.mark.live, pytest.mark.slow]


def test_each_line_is_printed_once(tmp_path):
    env = live_env(tmp_path, CHUNKY_TEST_ORPHAN_GRACE="0")
    orphan = tmp_path / "chunks" / f"{'a' * 32}.part"  # swept at once, and the sweep logged
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"x")
    with WorkerProcess(env) as worker:
        app = Celery(broker=env["CELERY_BROKER_URL"])
        app.conf.broker_transport_options = {"global_keyprefix": env["CHUNKY_TEST_QUEUE"] + ":"}
        app.send_task("chunky_redis.purge_expired_uploads", queue=env["CHUNKY_TEST_QUEUE"])
        wait_for(lambda: " succeeded in " in worker.log_text(), message="the sweep")
        log = worker.log_text()
    assert not orphan.exists()
    line = "chunky_redis: sweep: 0 expired upload(s) and 1 orphan file(s) removed"
    assert log.count(line) == 1, log
    # In Celery's format, like the worker's own lines: "[time: LEVEL/ProcessName] message".
    assert f"INFO/ForkPoolWorker-1] {line}" in log
