"""The final storage on S3 (issue 10, part 2): django-storages' S3Storage against moto's server.

The hand-off streams the chunk file into a multipart upload, whose object shows
at its final name only once the upload completes: memory stays bounded for
1 GiB, a killed hand-off leaves no half object, an outage keeps the bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest
import requests
from django.core.management import call_command

import tasks  # noqa: F401  (the bundled Celery app: eager, configured from tests/settings.py)
from chunky_redis.core.store import COMPLETE, FAILED, PROCESSING
from chunky_redis.tasks import finalize_upload
from tests.support.handoff_probe import write_source
from tests.support.s3 import CREDENTIALS, LocalS3
from tests.test_finalize import (
    complete,
    named,
    payload,
    put_chunks,
    status,
)

pytestmark = pytest.mark.live  # a moto server process
MiB = 1 << 20
BUCKET = "chunky-final"
S3_STORAGE = "storages.backends.s3.S3Storage"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def local_s3():
    s3 = LocalS3().start()
    s3.client().create_bucket(Bucket=BUCKET)
    yield s3
    s3.stop()


@pytest.fixture
def s3_env(monkeypatch):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)


def use_s3(chunky, s3: LocalS3) -> None:
    for key, value in s3.django_settings(BUCKET).items():
        setattr(chunky, key, value)
    chunky.CHUNKY_REDIS_FINAL_STORAGE = S3_STORAGE


@pytest.fixture
def queued(chunky, monkeypatch):
    """Completions are recorded here instead of running the task."""
    ids: list[str] = []
    monkeypatch.setattr("chunky_redis.processing.completion.enqueue_finalize", ids.append)
    return ids


def object_bytes(s3: LocalS3, key: str) -> bytes:
    return s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()


def test_upload_ends_complete_with_the_object_in_s3(
    chunky, store, local_s3, s3_env, queued, signal_log, client
):
    use_s3(chunky, local_s3)
    data = payload(300_000)
    upload_id = put_chunks(client, data, filename="report.pdf")
    assert complete(client, upload_id, data).json()["status"] == "processing"

    assert finalize_upload.delay(upload_id).get() == COMPLETE

    seen = status(client, upload_id)
    name = f"chunky_redis/{upload_id}/report.pdf"
    assert seen["status"] == COMPLETE and seen["final_name"] == name
    assert object_bytes(local_s3, name) == data
    # final_url is django-storages' url(): presigned (AWS_QUERYSTRING_AUTH defaults to True).
    url = urlsplit(seen["final_url"])
    assert f"{url.scheme}://{url.netloc}" == local_s3.endpoint_url
    assert url.path == f"/{BUCKET}/{name}" and "Signature=" in url.query
    assert requests.get(seen["final_url"], timeout=10).content == data
    assert not os.path.exists(os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part"))
    [sent] = named(signal_log, "upload_completed")
    assert (sent["final_name"], sent["final_url"]) == (name, seen["final_url"])


def test_an_s3_outage_keeps_the_bytes_and_chunky_retry_finishes(
    chunky, store, s3_env, queued, signal_log, client
):
    down = LocalS3()  # a port nobody listens on: S3 is unreachable
    use_s3(chunky, down)
    chunky.CHUNKY_REDIS_FINALIZE_MAX_RETRIES = 2
    data = payload(100_000, seed=3)
    upload_id = put_chunks(client, data)
    complete(client, upload_id, data)
    part = os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part")

    assert finalize_upload.apply(args=[upload_id]).result == FAILED  # after its retries
    assert "Post-processing kept failing" in store.get(upload_id).reason
    with open(part, "rb") as f:
        assert f.read() == data  # nothing lost
    assert named(signal_log, "upload_completed") == []

    down.start()  # S3 is back, on the same address
    try:
        down.client().create_bucket(Bucket=BUCKET)
        out = io.StringIO()
        call_command("chunky_retry", upload_id, stdout=out)
        assert out.getvalue().strip() == f"{upload_id}: queued"
        assert queued[-1] == upload_id and store.get(upload_id).status == PROCESSING
        assert finalize_upload.apply(args=[upload_id]).result == COMPLETE
        name = store.get(upload_id).final_name
        assert object_bytes(down, name) == data
        assert not os.path.exists(part)
        [sent] = named(signal_log, "upload_completed")
        assert sent["final_name"] == name
    finally:
        down.stop()


# -- the hand-off itself, in a separate process that the test can measure or kill -----------


def probe(s3: LocalS3, path: str, name: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.handoff_probe", path, "--target", "s3"]
        + ["--endpoint", s3.endpoint_url, "--bucket", BUCKET, "--name", name, *extra],
        cwd=REPO,
        env={**os.environ, **CREDENTIALS},
        stdout=subprocess.PIPE,
        text=True,
    )


def stored_md5(s3: LocalS3, key: str) -> str:
    digest = hashlib.md5()
    for piece in s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].iter_chunks(MiB):
        digest.update(piece)
    return digest.hexdigest()


@pytest.mark.slow
def test_a_1gib_hand_off_is_a_multipart_upload_in_bounded_memory(local_s3, tmp_path):
    source = str(tmp_path / "big.part")
    md5 = write_source(source, 1024 * MiB)
    name = f"chunky_redis/{os.urandom(8).hex()}/big.bin"

    run = probe(local_s3, source, name)
    out, _ = run.communicate(timeout=600)
    assert run.returncode == 0
    result = json.loads(out)

    assert result["name"] == name and not os.path.exists(source)
    head = local_s3.client().head_object(Bucket=BUCKET, Key=name)
    assert head["ContentLength"] == 1024 * MiB
    assert head["ETag"].strip('"').endswith("-128")  # 128 parts of 8 MiB: multipart
    assert stored_md5(local_s3, name) == md5
    # django-storages' defaults: boto3 reads at most max_in_memory_upload_chunks (10) parts of
    # 8 MiB ahead; measured ~125 MiB with its buffers (bench/results/s3-handoff). A hand-off
    # that held the file would grow by over 1 GiB.
    assert result["peak_rss_growth"] < 160 * MiB, result


@pytest.mark.slow
def test_a_hand_off_killed_mid_upload_leaves_no_half_object(local_s3, tmp_path):
    source = str(tmp_path / "big.part")
    md5 = write_source(source, 256 * MiB)
    name = f"chunky_redis/{os.urandom(8).hex()}/big.bin"
    s3 = local_s3.client()

    def parts_sent() -> int:
        uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=name).get("Uploads", [])
        if not uploads:
            return 0
        return len(
            s3.list_parts(Bucket=BUCKET, Key=name, UploadId=uploads[0]["UploadId"]).get("Parts", [])
        )

    run = probe(local_s3, source, name)
    deadline = time.monotonic() + 120
    while parts_sent() < 2:
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)  # the worker dies mid-upload
    run.wait()

    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=name)  # no half object
    assert os.path.getsize(source) == 256 * MiB  # the chunk file is kept for the retry
    # What the dead attempt left is an incomplete multipart upload: invisible, and removed
    # by the bucket's AbortIncompleteMultipartUpload lifecycle rule (see the README).
    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix=name).get("Uploads")

    retry = probe(local_s3, source, name)
    out, _ = retry.communicate(timeout=300)
    assert retry.returncode == 0 and json.loads(out)["name"] == name
    assert stored_md5(local_s3, name) == md5
