"""The S3 final storage behind the real site and a real Celery worker (issue 10, part 2).

S3 is down when the upload completes: the worker's task retries with backoff,
keeps the chunk file, and finishes the upload when S3 comes back, with one signal.
"""

from __future__ import annotations

import pytest
import requests

from tests.support.processes import SiteProcess, WorkerProcess, live_env, wait_for
from tests.support.s3 import CREDENTIALS, LocalS3
from tests.test_worker import (
    broker_idle,
    chunk_path,
    complete,
    payload,
    signals_named,
    status,
    upload,
)

pytestmark = [pytest.mark.slow, pytest.mark.live]
BUCKET = "chunky-live"


def test_worker_retries_through_an_s3_outage(tmp_path):
    s3 = LocalS3()  # not started yet: S3 is down
    env = live_env(
        tmp_path,
        CHUNKY_TEST_FINAL_STORAGE="storages.backends.s3.S3Storage",
        CHUNKY_TEST_S3_ENDPOINT=s3.endpoint_url,
        CHUNKY_TEST_S3_BUCKET=BUCKET,
        **CREDENTIALS,
    )
    data = payload(3 * 256 * 1024 + 77)
    try:
        with SiteProcess(env) as site, WorkerProcess(env) as worker:
            upload_id = upload(site, data, filename="scan.tiff")
            assert complete(site, upload_id, data).status_code == 200
            wait_for(
                lambda: worker.log_text().count("retrying in") >= 2,
                timeout=60,
                message="the task to fail and retry twice",
            )
            assert status(site, upload_id)["status"] == "processing"
            assert chunk_path(env, upload_id).read_bytes() == data  # kept for the next try

            s3.start()  # S3 is back
            s3.client().create_bucket(Bucket=BUCKET)
            seen = wait_for(
                lambda: (s := status(site, upload_id))["status"] == "complete" and s,
                timeout=60,
                message="a retry to complete the upload",
            )
            wait_for(lambda: broker_idle(env), timeout=30, message="an idle broker")

        name = f"chunky_redis/{upload_id}/scan.tiff"
        assert seen["final_name"] == name
        assert s3.client().get_object(Bucket=BUCKET, Key=name)["Body"].read() == data
        assert requests.get(seen["final_url"], timeout=10).content == data  # presigned
        assert not chunk_path(env, upload_id).exists()
        [sent] = signals_named(env, "upload_completed")
        assert (sent["final_name"], sent["final_url"]) == (name, seen["final_url"])
    finally:
        s3.stop()
