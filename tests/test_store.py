"""The Redis record and its Lua scripts, on fakeredis and the real Redis."""

from __future__ import annotations

import uuid

import pytest

from chunky_redis.core.store import COMPLETE, EXPIRED, PROCESSING, Upload, UploadStore


def make(store, **fields) -> Upload:
    now = store.now()
    upload = Upload(
        upload_id=uuid.uuid4().hex,
        owner="7",
        size=100,
        offset=10,
        created=now,
        expires=now + 60_000,
        hash_state=b"\x00\xffstate",
        extra={"k": "v"},
        **fields,
    )
    store.create(upload)
    return upload


def test_keys_share_the_upload_hash_tag(store):
    from redis.crc import key_slot

    upload_id = "f" * 32
    keys = (store.record_key(upload_id), store.lock_key(upload_id), store.lease_key(upload_id))
    for key in keys:
        assert f"{{{upload_id}}}" in key
    # one Redis Cluster slot for all keys a script touches
    assert len({key_slot(key.encode()) for key in keys}) == 1


def test_create_and_read_round_trip(store):
    upload = make(store)
    again = store.get(upload.upload_id)
    assert again == upload
    ttl_ms = store.redis.pttl(store.record_key(upload.upload_id))
    assert 0 < ttl_ms <= 60_000 + store.expired_retention_ms
    assert store.due_expiries() == []
    with pytest.raises(RuntimeError, match=f"Upload {upload.upload_id} already exists"):
        store.create(upload)


def test_acquire_returns_the_whole_record_whatever_its_bytes(store):
    """ACQUIRE's record comes back packed (lengths, then the fields end to end): values that
    hold the separators, digits, NULs or nothing at all come back as they were stored."""
    upload = make(
        store,
        filename="1,2:3",
        durable_state=bytes(range(256)) + b",,10,",
        digest_states={"sha256": b"", "sha1": b"7,\x00,"},
    )
    code, got = store.acquire(upload.upload_id, "7", "t1")
    assert code == "ok"
    assert got == store.get(upload.upload_id) == upload


def test_acquire_checks_owner_expiry_and_lock(store):
    upload = make(store)
    assert store.acquire(upload.upload_id, "8", "t1")[0] == "missing"
    assert store.acquire(uuid.uuid4().hex, "7", "t1")[0] == "missing"
    code, got = store.acquire(upload.upload_id, "7", "t1")
    assert code == "ok" and got.offset == 10
    assert store.acquire(upload.upload_id, "7", "t2")[0] == "locked"
    assert store.acquire(upload.upload_id, "7", "", lock=False)[0] == "ok"
    store.release(upload.upload_id, "not-mine")
    assert store.is_locked(upload.upload_id)
    store.release(upload.upload_id, "t1")
    assert not store.is_locked(upload.upload_id)


def test_expired_uploads_answer_expired(store):
    now = store.now()
    upload = Upload(upload_id=uuid.uuid4().hex, size=10, created=now - 10, expires=now - 1)
    store.create(upload)
    assert store.acquire(upload.upload_id, "", "t")[0] == "expired"
    assert not store.is_locked(upload.upload_id)
    assert store.due_expiries() == [upload.upload_id]


def test_commit_advances_offset_and_state_together_and_releases(store):
    upload = make(store)
    store.acquire(upload.upload_id, "7", "tok")
    assert (
        store.commit(upload, "tok", new_offset=20, hash_state=b"new", expires=upload.expires)
        == "ok"
    )
    got = store.get(upload.upload_id)
    assert (got.offset, got.hash_state) == (20, b"new")
    assert not store.is_locked(upload.upload_id)


def test_commit_refuses_without_the_lock(store):
    upload = make(store)
    store.acquire(upload.upload_id, "7", "tok")
    store.redis.delete(store.lock_key(upload.upload_id))  # the lock lapsed ...
    store.acquire(upload.upload_id, "7", "other")  # ... and someone else took it
    assert (
        store.commit(upload, "tok", new_offset=20, hash_state=b"x", expires=upload.expires)
        == "lost"
    )
    got = store.get(upload.upload_id)
    assert (got.offset, got.hash_state) == (10, b"\x00\xffstate")
    assert store.redis.get(store.lock_key(upload.upload_id)) == b"other"


def test_commit_refuses_a_moved_offset(store):
    upload = make(store)
    store.acquire(upload.upload_id, "7", "tok")
    store.redis.hset(store.record_key(upload.upload_id), "offset", 50)
    assert (
        store.commit(upload, "tok", new_offset=20, hash_state=b"x", expires=upload.expires)
        == "conflict"
    )
    assert store.get(upload.upload_id).offset == 50


def test_sliding_expiry_updates_the_sweep_index(store):
    upload = make(store)
    store.acquire(upload.upload_id, "7", "tok")
    later = upload.expires + 5_000
    assert store.commit(upload, "tok", new_offset=20, hash_state=b"x", expires=later) == "ok"
    assert store.expiries.score(upload.upload_id) == later


def test_mark_processing_once(store):
    upload = make(store)
    store.acquire(upload.upload_id, "7", "tok")
    assert store.mark_processing(upload, "tok", "abc") == "ok"
    got = store.get(upload.upload_id)
    assert (got.status, got.checksum) == (PROCESSING, "abc")
    assert store.expiries.score(upload.upload_id) is None
    store.acquire(upload.upload_id, "7", "tok2")
    assert store.mark_processing(upload, "tok2", "abc") == "conflict"


def test_transition_is_guarded(store):
    upload = make(store, status=PROCESSING)
    assert store.transition(upload.upload_id, PROCESSING, COMPLETE, final_name="n") == "ok"
    assert store.transition(upload.upload_id, PROCESSING, COMPLETE, final_name="m") == COMPLETE
    assert store.get(upload.upload_id).final_name == "n"
    assert store.transition(uuid.uuid4().hex, PROCESSING, COMPLETE) == "missing"


def test_mark_expired_respects_locks_and_liveness(store):
    live = make(store)
    assert store.mark_expired(live.upload_id) == "live"
    now = store.now()
    dead = Upload(upload_id=uuid.uuid4().hex, size=10, created=now - 10, expires=now - 1)
    store.create(dead)
    store.redis.set(store.lock_key(dead.upload_id), "x")
    assert store.mark_expired(dead.upload_id) == "locked"
    store.redis.delete(store.lock_key(dead.upload_id))
    assert store.mark_expired(dead.upload_id) == "ok"
    assert store.get(dead.upload_id).status == EXPIRED
    assert store.acquire(dead.upload_id, "", "t", lock=False)[0] == "expired"
    assert store.mark_expired(uuid.uuid4().hex) == "missing"


def test_redis_errors_become_store_unavailable(settings):
    from chunky_redis import runtime
    from chunky_redis.exceptions import StoreUnavailable

    settings.CHUNKY_REDIS_REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    with pytest.raises(StoreUnavailable):
        runtime.get_store().get("a" * 32)


def test_unreachable_redis_is_a_503_not_a_500(settings, tmp_path):
    from django.test import Client

    settings.CHUNKY_REDIS_REDIS_URL = "redis://127.0.0.1:1/0"
    settings.CHUNKY_REDIS_ALLOW_ANONYMOUS = True
    settings.CHUNKY_REDIS_UPLOAD_DIR = str(tmp_path)
    reply = Client().put(
        "/upload/" + "a" * 32 + "/",
        b"x",
        content_type="application/octet-stream",
        HTTP_CONTENT_RANGE="bytes 0-0/1",
    )
    assert reply.status_code == 503
    assert reply.json()["code"] == "store_unavailable"


def in_processing_index(store, upload_id: str) -> bool:
    return upload_id in store.due_processing(store.now() + 10**9)


@pytest.mark.parametrize("answer", ["ok", "fresh", "leased"])
def test_a_requeue_that_may_come_again_keeps_the_upload_watched(store, answer):
    """'ok' (queued again), 'fresh' and 'leased' (looked at again after another grace):
    the upload stays in the processing index, stamped now."""
    upload = make(store, status=PROCESSING, queued=store.now() - 120_000)
    if answer == "leased":
        store.take_lease(upload.upload_id, "worker", 60_000)
    if answer == "fresh":
        store.requeue(upload.upload_id, 60_000)  # stamps it queued now
    before = store.now()
    assert store.requeue(upload.upload_id, 60_000) == answer
    assert in_processing_index(store, upload.upload_id)
    assert store.due_processing(before - 1) == []  # its entry is stamped now, not earlier


@pytest.mark.parametrize("status", [COMPLETE, "missing"])
def test_a_requeue_of_an_upload_past_processing_stops_watching_it(store, status):
    upload = make(store, status=PROCESSING, queued=store.now() - 120_000)
    store.processing.add(upload.upload_id, store.now() - 120_000)
    if status == "missing":
        store.redis.delete(store.record_key(upload.upload_id))
    else:
        store.transition(upload.upload_id, PROCESSING, COMPLETE)
    assert store.requeue(upload.upload_id, 60_000) == status
    assert not in_processing_index(store, upload.upload_id)


def test_pruning_forgets_only_failed_uploads_past_their_retention(store):
    recent, old = make(store, status=PROCESSING), make(store, status=PROCESSING)
    store.index_status(recent.upload_id, "failed")
    store.redis.zadd(
        store.failed_key, {old.upload_id: store.now() - store.completed_retention_ms - 1}
    )
    assert store.failed_ids() == [recent.upload_id]
    store.prune_failed()
    assert store.redis.zrange(store.failed_key, 0, -1) == [recent.upload_id.encode()]


def test_presence_on_a_cluster_asks_upload_by_upload(store, monkeypatch):
    """Redis Cluster refuses scripts in a pipeline: there, one call per upload."""
    from chunky_redis.core import indexes

    uploading, complete = make(store), make(store, status=COMPLETE)
    store.acquire(uploading.upload_id, "7", "token")
    monkeypatch.setattr(indexes, "is_cluster", lambda client: client is store.redis)

    def refuse(*args, **kwargs):
        raise AssertionError("a cluster pipeline refuses the script")

    gone = uuid.uuid4().hex
    # Only for the call: the fixtures' teardown deletes keys through a pipeline on a cluster.
    with monkeypatch.context() as patched:
        patched.setattr(store.redis, "pipeline", refuse)
        presence = store.presence([uploading.upload_id, complete.upload_id, gone])
    assert presence == {
        uploading.upload_id: "locked",
        complete.upload_id: COMPLETE,
        gone: "missing",
    }


def test_commit_advances_the_extra_digest_states_in_the_same_step(store):
    upload = make(store, digest_states={"sha256": b"s0", "sha1": b""})
    assert store.get(upload.upload_id).digest_states == {"sha256": b"s0", "sha1": b""}
    store.acquire(upload.upload_id, "7", "tok")
    states = {"sha256": b"s1", "sha1": b"t1"}
    assert (
        store.commit(
            upload,
            "tok",
            new_offset=20,
            hash_state=b"h",
            expires=upload.expires,
            digest_states=states,
        )
        == "ok"
    )
    assert store.get(upload.upload_id).digest_states == states
    # from a stale offset nothing moves, the extra states neither
    store.acquire(upload.upload_id, "7", "tok2")
    stale = {"sha256": b"s2", "sha1": b"t2"}
    assert (
        store.commit(
            upload,
            "tok2",
            new_offset=30,
            hash_state=b"h2",
            expires=upload.expires,
            digest_states=stale,
        )
        == "conflict"
    )
    again = store.get(upload.upload_id)
    assert (again.offset, again.hash_state, again.digest_states) == (20, b"h", states)


def test_a_transition_sets_the_extra_attributes_as_json(store):
    upload = make(store, status=PROCESSING)
    assert store.transition(upload.upload_id, PROCESSING, PROCESSING, extra={"album": 7}) == "ok"
    assert store.get(upload.upload_id).extra == {"album": 7}


def test_the_lease_time_left_is_zero_without_a_lease(store):
    upload = make(store, status=PROCESSING)
    assert store.lease_ttl_ms(upload.upload_id) == 0
    store.take_lease(upload.upload_id, "worker", 60_000)
    assert 59_000 < store.lease_ttl_ms(upload.upload_id) <= 60_000


def test_a_refused_commit_leaves_the_expiry_index_alone(store):
    upload = make(store)
    before = store.expiries.score(upload.upload_id)
    later = upload.expires + 60_000
    answer = store.commit(upload, "not-the-lock", new_offset=20, hash_state=b"", expires=later)
    assert answer == "lost"
    assert store.expiries.score(upload.upload_id) == before


def test_a_record_s_empty_fields_read_as_their_defaults():
    """A number or the attributes left empty in a record read as 0 and {}, as an absent field."""
    upload = Upload.from_redis(
        "u1", {b"offset": b"", b"durable": b"", b"extra": b"", b"size": b"7"}
    )
    assert (upload.offset, upload.durable, upload.extra, upload.size) == (0, 0, {}, 7)
    # the flat reply of the lock script reads the same as HGETALL's mapping
    flat = Upload.from_redis("u1", [b"offset", b"", b"extra", b"", b"size", b"7"])
    assert (flat.offset, flat.extra, flat.size) == (0, {}, 7)


def test_a_creation_whose_marker_lapsed_is_not_indexed_for_expiry(store):
    now = store.now()
    upload = Upload(upload_id=uuid.uuid4().hex, size=10, created=now, expires=now + 60_000)
    assert store.create(upload, "a-marker-never-set") == "lost"
    assert store.get(upload.upload_id) is None
    assert store.expiries.score(upload.upload_id) is None


def replicas_acknowledge(store, monkeypatch, acked: int, configure: bool = True) -> list[tuple]:
    """Answer the WAIT after each recorded write with ``acked`` (fakeredis has no WAIT, and
    the test's Redis no replicas); returns the (replicas, timeout) each WAIT asked for."""
    waits: list[tuple] = []
    pipeline = store.redis.pipeline

    def answering_pipeline(*args, **kwargs):
        pipe = pipeline(*args, **kwargs)
        execute_command = pipe.execute_command

        def answer_wait(*command, **options):
            if command[0] == "WAIT":
                waits.append(command[1:])
                return execute_command("ECHO", acked)
            return execute_command(*command, **options)

        pipe.execute_command = answer_wait
        return pipe

    monkeypatch.setattr(store.redis, "pipeline", answering_pipeline)
    if configure:
        monkeypatch.setattr(store, "wait_replicas", 2)
        monkeypatch.setattr(store, "wait_timeout_ms", 250)
    return waits


def test_with_wait_replicas_a_write_acknowledged_by_enough_replicas_is_recorded(
    store, monkeypatch, backend
):
    if backend == "cluster":  # its WAIT goes to the slot's node, whose one replica answers
        monkeypatch.setattr(store, "wait_replicas", 1)
        waits = None
    else:
        waits = replicas_acknowledge(store, monkeypatch, acked=2)
    upload = make(store)
    assert store.get(upload.upload_id) == upload
    store.acquire(upload.upload_id, "7", "tok")
    answer = store.commit(upload, "tok", new_offset=20, hash_state=b"s", expires=upload.expires)
    assert answer == "ok"
    assert store.get(upload.upload_id).offset == 20
    if waits is not None:
        assert waits == [(2, 250), (2, 250)]  # each write waited for its replicas, that long


def test_with_wait_replicas_too_few_acknowledgements_are_a_503_the_primary_keeps_it(
    store, monkeypatch
):
    from chunky_redis.exceptions import StoreUnavailable

    upload = make(store)
    store.acquire(upload.upload_id, "7", "tok")
    replicas_acknowledge(store, monkeypatch, acked=1)
    with pytest.raises(StoreUnavailable, match="Only 1 of 2"):
        store.commit(upload, "tok", new_offset=20, hash_state=b"s", expires=upload.expires)
    assert store.get(upload.upload_id).offset == 20  # the client asks, the primary answers
    # a refused write has nothing to lose: its answer comes back whatever the replicas say
    answer = store.commit(upload, "tok", new_offset=30, hash_state=b"s", expires=upload.expires)
    assert answer == "lost"


def test_a_store_built_to_wait_for_replicas_waits_for_them_that_long(monkeypatch):
    import fakeredis

    # (on fakeredis: the answering pipeline is a single-node client's)
    waiting = UploadStore(fakeredis.FakeRedis(), wait_replicas=3, wait_timeout_ms=400)
    waits = replicas_acknowledge(waiting, monkeypatch, acked=3, configure=False)
    upload = make(waiting)
    assert waiting.get(upload.upload_id) == upload
    assert waits == [(3, 400)]


def test_a_store_built_without_options_has_an_unconfigured_site_s_keys_and_times():
    """Outside Django too, a store's defaults are the settings' (chunky_redis/conf.py)."""
    import fakeredis

    from chunky_redis.conf import conf, milliseconds

    bare = UploadStore(fakeredis.FakeRedis(socket_timeout=None))  # no socket timeout to bound
    assert bare.record_key("u") == f"{conf.KEY_PREFIX}:{{u}}:upload" == "chunky:{u}:upload"
    assert (bare.lock_timeout_ms, bare.lock_request_timeout_ms) == (
        milliseconds(conf.LOCK_TIMEOUT),
        milliseconds(conf.LOCK_REQUEST_TIMEOUT),
    )
    assert (bare.expired_retention_ms, bare.completed_retention_ms) == (
        milliseconds(conf.EXPIRED_RETENTION),
        milliseconds(conf.COMPLETED_RETENTION),
    )
    assert (bare.wait_replicas, bare.wait_timeout_ms) == (
        conf.WAIT_REPLICAS,
        milliseconds(conf.WAIT_TIMEOUT),
    )


def test_a_new_upload_s_marker_is_set_only_where_none_is(store):
    """claim_new() never takes over a marker or lock that another token holds."""
    upload_id = uuid.uuid4().hex
    assert store.claim_new(upload_id, "first") is True
    assert store.claim_new(upload_id, "second") is False
    assert store.redis.get(store.lock_key(upload_id)) == b"first"
    assert 0 < store.redis.pttl(store.lock_key(upload_id)) <= store.lock_timeout_ms
