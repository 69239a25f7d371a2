"""A real worker loses the reply of the script that finished an upload (the link to
Redis timed out just after it ran): Celery retries the task, and the retry sends
`upload_completed`, once. tests/support/lost_reply.py loses the reply."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.support.api import LiveApi
from tests.support.processes import (
    SiteProcess,
    WorkerProcess,
    live_env,
    queue_finalize,
    read_signals,
    wait_for,
)
from tests.test_finalize import payload

pytestmark = [pytest.mark.live, pytest.mark.fault, pytest.mark.slow]


def test_a_real_worker_that_lost_the_reply_signals_once(tmp_path):
    marker = tmp_path / "reply-lost"
    env = live_env(tmp_path, CHUNKY_TEST_LOSE_REPLY=str(marker))
    data = payload(200_000)
    with SiteProcess(env, workers=1) as site, WorkerProcess(env, concurrency=2) as worker:
        api = LiveApi(site.url)
        reply = api.put("/upload/", data, content_range=f"bytes 0-{len(data) - 1}/{len(data)}")
        assert reply.status == 200, reply.body
        upload_id = reply.data["upload_id"]
        md5 = hashlib.md5(data).hexdigest()
        assert api.post_json(f"/upload/{upload_id}/", {"md5": md5}).status == 200
        wait_for(marker.exists, message="the worker to lose the reply")
        wait_for(
            lambda: "'complete'" in worker.log_text(),
            timeout=60,
            message=f"the retried task to send the signals:\n{worker.log_text()}",
        )
        done = api.get(f"/upload/{upload_id}/").data
        assert done["status"] == "complete"
        # A duplicate task (another id), such as the sweeper queues, finds nothing of its own.
        queue_finalize(env, upload_id)
        wait_for(lambda: "'skipped'" in worker.log_text(), message="the duplicate task to end")
    log = worker.log_text()
    assert "retry" in log.lower(), log
    completed = [s for s in read_signals(env) if s["signal"] == "upload_completed"]
    assert [s["upload_id"] for s in completed] == [upload_id]
    assert completed[0]["final_name"] == done["final_name"]
    assert (Path(env["MEDIA_ROOT"]) / done["final_name"]).read_bytes() == data
