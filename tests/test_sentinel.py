"""A Sentinel-managed primary: failed over mid-upload, the upload completes with the right digest.

The session's private primary, replica and three Sentinels (tests/support/redis_servers.py)
are started on first use; every test leaves a primary with an in-sync replica behind.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from chunky_redis import runtime
from tests.conftest import cleanup_keys, local_deployment
from tests.support.api import ClientApi, LiveApi
from tests.support.checked_upload import (
    CheckedUpload,
    assert_completed,
    run_through,
    send_while_stalled,
    start_waiting_for_a_replica,
    upload_and_wait,
)
from tests.support.processes import SiteProcess, WorkerProcess, live_env

pytestmark = pytest.mark.slow  # real Redis processes, failed over


@pytest.fixture
def sentinel(settings, tmp_path):
    deployment = local_deployment("sentinel")
    settings.CHUNKY_REDIS_REDIS_URL = deployment.url
    settings.CHUNKY_REDIS_KEY_PREFIX = f"chunky-test-{os.urandom(6).hex()}"
    settings.CHUNKY_REDIS_UPLOAD_DIR = str(tmp_path / "chunks")
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.CHUNKY_REDIS_ALLOW_ANONYMOUS = True
    settings.CHUNKY_REDIS_LOCK_TIMEOUT = 2  # a request cut short by the failover holds it this long
    yield deployment
    cleanup_keys(settings)


def test_the_url_finds_the_primary_through_the_sentinels(sentinel):
    client = runtime.get_redis()
    assert client.info("replication")["role"] == "master"
    assert client.connection_pool.get_master_address()[1] == sentinel.current_primary_port()


@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_sentinel_failover_mid_upload(sentinel, settings, wait_replicas):
    settings.CHUNKY_REDIS_WAIT_REPLICAS = wait_replicas
    upload = CheckedUpload(
        ClientApi(), os.urandom(2 << 20), 16 * 1024, Path(settings.CHUNKY_REDIS_UPLOAD_DIR)
    )
    old_primary = sentinel.primary.port

    begun, ended = run_through(upload, sentinel.failover)

    assert sentinel.current_primary_port() != old_primary
    assert upload.answers_between(begun, ended) >= 1  # the upload went on during the failover
    print(
        f"answers during the failover: {upload.answers_between(begun, ended)}, "
        f"offsets taken back: {upload.rollbacks()}"
    )
    assert_completed(ClientApi(), upload, Path(settings.MEDIA_ROOT))
    # the record is on the new primary
    assert runtime.get_redis().connection_pool.get_master_address()[1] != old_primary


def test_wait_for_a_replica(sentinel, settings):
    """With WAIT, a chunk is acknowledged only once the replica has it; a stalled replica: 503."""
    api, data, upload_id = start_waiting_for_a_replica(settings, 4000)
    record = runtime.get_store().record_key(upload_id)
    assert sentinel.replica.client().hget(record, "offset") == b"1000"  # acknowledged = replicated

    reply = api.put(f"/upload/{upload_id}/", data[1000:2000], content_range="bytes 1000-1999/4000")
    assert reply.status == 200, reply.body
    assert sentinel.replica.client().hget(record, "offset") == b"2000"

    reply = send_while_stalled(sentinel.replica.proc, api, upload_id, data, 2000, 3000)
    assert reply.status == 503, reply.body
    assert reply.data["code"] == "store_unavailable"
    assert api.get(f"/upload/{upload_id}/").data["offset"] == 3000  # the primary has it
    settings.CHUNKY_REDIS_WAIT_REPLICAS = 2  # more replicas than there are: never acknowledged
    reply = api.put(f"/upload/{upload_id}/", data[3000:], content_range="bytes 3000-3999/4000")
    assert reply.status == 503, reply.body
    settings.CHUNKY_REDIS_WAIT_REPLICAS = 1
    reply = api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()})
    assert reply.status == 200, reply.body


def test_the_bundled_site_and_worker_on_sentinel(sentinel, tmp_path):
    """REDIS_URL=redis+sentinel://...: upload state on the primary, Celery on the sentinel:// broker."""
    env = live_env(tmp_path, redis_url=sentinel.url)
    del env["CELERY_BROKER_URL"]  # derived from REDIS_URL: kombu's Sentinel transport
    data = os.urandom(300_000)
    with SiteProcess(env, workers=1) as site, WorkerProcess(env):
        status = upload_and_wait(LiveApi(site.url), data, chunk=100_000)
    assert status["status"] == "complete", status
    stored = (tmp_path / "media" / status["final_name"]).read_bytes()
    assert stored == data
