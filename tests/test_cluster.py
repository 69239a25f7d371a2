"""Redis Cluster: uploads keep their bytes and checksum through a slot migration and a failover.

The store, protocol, race, expiry and sweeper suites run on the same private cluster
through the ``backend`` parameter "cluster" (tests/conftest.py); this file adds what
only a cluster can do. Every test here moves slots or primaries of the session's
cluster and waits until it is healthy again before it ends.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot

from chunky_redis import runtime
from chunky_redis.core.store import Upload
from tests.conftest import cleanup_keys, configure, local_deployment
from tests.support.api import ClientApi, LiveApi
from tests.support.checked_upload import (
    CheckedUpload,
    assert_completed,
    run_through,
    send_while_stalled,
    start_waiting_for_a_replica,
    upload_and_wait,
)
from tests.support.processes import REPO, SiteProcess, WorkerProcess, live_env

pytestmark = pytest.mark.slow  # real Redis processes, failed over and migrated

CHUNK = 16 * 1024
SIZE = 2 << 20


@pytest.fixture
def cluster(settings, tmp_path):
    configure(settings, "cluster", tmp_path)
    settings.CHUNKY_REDIS_LOCK_TIMEOUT = 2  # a request cut short by a failover holds it this long
    deployment = local_deployment("cluster")
    yield deployment
    deployment.wait_healthy()
    cleanup_keys(settings)


def checked_upload(settings) -> CheckedUpload:
    return CheckedUpload(
        ClientApi(), os.urandom(SIZE), CHUNK, Path(settings.CHUNKY_REDIS_UPLOAD_DIR)
    )


def slot_of(upload_id: str) -> int:
    return key_slot(runtime.get_store().record_key(upload_id).encode())


def test_the_url_gives_a_cluster_client(cluster):
    client = runtime.get_redis()
    assert isinstance(client, RedisCluster)
    assert len(client.get_primaries()) == 3


def test_statuses_of_uploads_on_every_shard_in_one_call(cluster):
    store = runtime.get_store()
    now = store.now()
    ids = [uuid.uuid4().hex for _ in range(60)]
    for upload_id in ids[:50]:
        store.create(Upload(upload_id=upload_id, size=1, created=now, expires=now + 60_000))
    owners = {cluster.owner_of(slot_of(upload_id)).port for upload_id in ids}
    assert len(owners) == 3  # the pipeline really crosses shards

    statuses = store.statuses(ids)

    assert statuses == {i: ("uploading" if i in ids[:50] else None) for i in ids}


def test_the_expiry_index_is_spread_over_the_shards(cluster):
    store = runtime.get_store()
    owners = {cluster.owner_of(key_slot(key.encode())).port for key in store.expiries.keys}
    assert len(owners) == 3
    now = store.now()
    ids = [uuid.uuid4().hex for _ in range(40)]
    for upload_id in ids:
        store.create(Upload(upload_id=upload_id, size=1, created=now - 10, expires=now - 1))
    assert sorted(store.due_expiries(limit=1000)) == sorted(ids)
    assert len(store.due_expiries(limit=7)) == 7


@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_a_slot_migrating_mid_upload_loses_nothing(cluster, settings, wait_replicas):
    settings.CHUNKY_REDIS_WAIT_REPLICAS = wait_replicas
    upload = checked_upload(settings)
    moments: list[tuple[str, list[int]]] = []

    def migrate() -> None:
        slot = slot_of(upload.upload_id)
        target = next(p for p in cluster.primaries() if p is not cluster.owner_of(slot))

        def pause(step: str) -> None:
            # Let requests arrive in each state: MIGRATING (keys still on the source),
            # keys moved (ASK to the target), the slot handed over (MOVED). While the
            # slot is half-way, Redis answers the two-key scripts TRYAGAIN: those
            # chunks get a 503 and are sent again.
            before = len(upload.told)
            deadline = time.monotonic() + 10
            while len(upload.told) < before + 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            moments.append((step, [status for _, status, _ in upload.told[before:]]))

        cluster.migrate_slot(slot, target, between_steps=pause)
        assert cluster.owner_of(slot) is target

    run_through(upload, migrate)

    assert [step for step, _ in moments] == ["migrating", "keys moved", "done"]
    assert all(answers for _, answers in moments), moments
    assert 200 in moments[-1][1], moments  # once handed over, chunks are taken again
    print("answers while migrating:", moments)
    assert_completed(ClientApi(), upload, Path(settings.MEDIA_ROOT))


@pytest.mark.parametrize("how", ["CLUSTER FAILOVER", "SIGKILL"])
def test_a_primary_failing_over_mid_upload_loses_nothing(cluster, settings, how):
    settings.CHUNKY_REDIS_WAIT_REPLICAS = 1 if how == "SIGKILL" else 0
    upload = checked_upload(settings)

    def fail_over() -> None:
        primary = cluster.owner_of(slot_of(upload.upload_id))
        new = (
            cluster.failover(primary)
            if how == "CLUSTER FAILOVER"
            else cluster.kill_primary(primary)
        )
        assert cluster.owner_of(slot_of(upload.upload_id)) is new

    begun, ended = run_through(upload, fail_over)

    assert upload.answers_between(begun, ended) >= 1  # the upload went on during the failover
    print(
        f"answers during the failover: {upload.answers_between(begun, ended)}, "
        f"offsets taken back: {upload.rollbacks()}"
    )
    assert_completed(ClientApi(), upload, Path(settings.MEDIA_ROOT))


def test_wait_refuses_to_acknowledge_what_no_replica_has(cluster, settings, caplog):
    """WAIT goes down the connection that wrote: a stalled replica makes the chunk a 503."""
    api, data, upload_id = start_waiting_for_a_replica(settings, 3000)
    replica = cluster.replica_of(cluster.owner_of(slot_of(upload_id)))
    reply = send_while_stalled(replica.proc, api, upload_id, data, 1000, 2000)
    assert reply.status == 503, reply.body
    assert reply.data["code"] == "store_unavailable"
    assert "Only 0 of 1 Redis replica(s) acknowledged" in caplog.text  # 5xx details: the log only
    # The primary recorded it; the client asks and carries on from there.
    assert api.get(f"/upload/{upload_id}/").data["offset"] == 2000
    cluster.wait_healthy()
    reply = api.put(f"/upload/{upload_id}/", data[2000:], content_range="bytes 2000-2999/3000")
    assert reply.status == 200, reply.body
    reply = api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()})
    assert reply.status == 200, reply.body


RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


def test_the_bundled_site_and_worker_on_a_cluster(cluster, tmp_path):
    """REDIS_URL=redis+cluster://... for upload state, RabbitMQ as Celery's broker."""
    env = live_env(tmp_path, redis_url=cluster.url, broker_url=RABBITMQ)
    data = os.urandom(300_000)
    with SiteProcess(env, workers=2) as site, WorkerProcess(env):
        status = upload_and_wait(LiveApi(site.url), data, chunk=100_000)
    assert status["status"] == "complete", status
    assert (tmp_path / "media" / status["final_name"]).read_bytes() == data


def test_the_bundled_site_wants_a_broker_beside_a_cluster(cluster, tmp_path):
    env = live_env(tmp_path, redis_url=cluster.url)
    del env["CELERY_BROKER_URL"]
    run = subprocess.run(
        [sys.executable, "-c", "import chunky_site.settings"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "Celery cannot use Redis Cluster as its broker" in run.stderr
    assert "Set CELERY_BROKER_URL" in run.stderr
