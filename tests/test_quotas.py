"""Per-owner quotas: uploads in flight (429 too_many_uploads) and bytes in flight (413 quota_exceeded).

Over HTTP for the rules, and on the tracker itself (with an injectable clock) for
the self-healing index: stale entries go at their expiry, missed releases go
before a refusal, and the keys expire with their last entry.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.test import Client
from redis.crc import key_slot

from chunky_redis import runtime
from chunky_redis.conf import conf
from chunky_redis.core.store import COMPLETE, Upload
from chunky_redis.quotas import Quota, QuotaTracker
from tests.support.api import ClientApi, multipart

pytestmark = pytest.mark.django_db


def start(api, size: int, first: bytes = b"0123456789"):
    return api.put("/upload/", first, content_range=f"bytes 0-{len(first) - 1}/{size}")


def complete(api, upload_id: str, data: bytes):
    last = api.put(
        f"/upload/{upload_id}/", data[10:], content_range=f"bytes 10-{len(data) - 1}/{len(data)}"
    )
    assert last.status == 200, last.body
    reply = api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()})
    assert reply.status == 200, reply.body


def files(chunky) -> list[str]:
    directory = chunky.CHUNKY_REDIS_UPLOAD_DIR
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def in_flight(owner: str = "") -> dict[str, int]:
    store = runtime.get_store()
    return QuotaTracker(store.redis, prefix=store.prefix).in_flight(owner)


def test_the_quota_settings(settings):
    assert (conf.MAX_UPLOADS_IN_FLIGHT, conf.MAX_BYTES_IN_FLIGHT) == (None, None)
    settings.CHUNKY_REDIS_MAX_UPLOADS_IN_FLIGHT = 3
    settings.CHUNKY_REDIS_MAX_BYTES_IN_FLIGHT = 1 << 30
    assert (conf.MAX_UPLOADS_IN_FLIGHT, conf.MAX_BYTES_IN_FLIGHT) == (3, 1 << 30)


@pytest.mark.parametrize("name", ["MAX_UPLOADS_IN_FLIGHT", "MAX_BYTES_IN_FLIGHT"])
@pytest.mark.parametrize("value", [0, -1, "10", 1.5, True])
def test_e009_bad_quota(settings, name, value):
    setattr(settings, "CHUNKY_REDIS_" + name, value)
    assert "chunky_redis.E009" in [e.id for e in run_checks()]


def test_too_many_uploads_in_flight_is_a_429(chunky):
    chunky.CHUNKY_REDIS_MAX_UPLOADS_IN_FLIGHT = 2
    api = ClientApi()
    data = bytes(range(20))
    first = start(api, 20).data["upload_id"]
    assert start(api, 20).status == 200
    refused = start(api, 20)
    assert refused.status == 429 and refused.is_json, refused.body
    assert refused.data["code"] == "too_many_uploads"
    assert (refused.data["in_flight"], refused.data["limit"]) == (2, 2)
    assert len(files(chunky)) == 2, "the refused upload wrote nothing"
    # A completed upload is no longer in flight.
    complete(api, first, b"0123456789" + data[10:])
    assert first not in in_flight()
    assert start(api, 20).status == 200
    assert len(in_flight()) == 2


def test_too_many_bytes_in_flight_is_a_413(chunky):
    chunky.CHUNKY_REDIS_MAX_BYTES_IN_FLIGHT = 100
    api = ClientApi()
    assert start(api, 60).status == 200
    refused = start(api, 50)
    assert refused.status == 413 and refused.data["code"] == "quota_exceeded", refused.body
    assert (refused.data["bytes_in_flight"], refused.data["limit"]) == (60, 100)
    assert start(api, 40).status == 200
    assert sorted(in_flight().values()) == [40, 60]
    assert len(files(chunky)) == 2


def test_a_multipart_body_of_unknown_size_is_counted_once_read(chunky):
    chunky.CHUNKY_REDIS_MAX_BYTES_IN_FLIGHT = 100
    api = ClientApi()
    assert start(api, 60).status == 200
    body, ctype = multipart(b"m" * 50)  # no Content-Range: its size is known only once read
    refused = api.request("PUT", "/upload/", body, ctype)
    assert refused.status == 413 and refused.data["code"] == "quota_exceeded", refused.body
    assert list(in_flight().values()) == [60], "the refused upload is not counted"
    assert len(files(chunky)) == 1, "and its bytes are gone"
    body, ctype = multipart(b"m" * 40)
    assert api.request("PUT", "/upload/", body, ctype).status == 200
    assert sorted(in_flight().values()) == [40, 60]


def test_a_one_shot_upload_over_the_bytes_quota_is_refused(chunky):
    """Its size is known only once its multipart body is read: counted then, and refused."""
    chunky.CHUNKY_REDIS_MAX_BYTES_IN_FLIGHT = 100
    api = ClientApi()
    assert start(api, 60).status == 200
    data = b"m" * 50
    body, ctype = multipart(data, fields={"md5": hashlib.md5(data).hexdigest()})
    refused = api.request("POST", "/upload/", body, ctype)
    assert refused.status == 413 and refused.data["code"] == "quota_exceeded", refused.body
    assert list(in_flight().values()) == [60]
    assert len(files(chunky)) == 1


def test_a_one_shot_upload_is_in_flight_only_during_its_request(chunky):
    chunky.CHUNKY_REDIS_MAX_UPLOADS_IN_FLIGHT = 1
    api = ClientApi()
    for _ in range(3):
        data = os.urandom(100)
        body, ctype = multipart(data, fields={"md5": hashlib.md5(data).hexdigest()})
        reply = api.request("POST", "/upload/", body, ctype)
        assert reply.status == 200, reply.body
    assert in_flight() == {}


def test_owners_have_their_own_quota_and_anonymous_users_share_one(chunky):
    chunky.CHUNKY_REDIS_MAX_UPLOADS_IN_FLIGHT = 1
    for name in ("alice", "bob"):
        client = Client()
        client.force_login(User.objects.create_user(name))
        api = ClientApi(client)
        assert start(api, 20).status == 200
        assert start(api, 20).status == 429
    assert start(ClientApi(), 20).status == 200
    assert start(ClientApi(), 20).status == 429, "every anonymous client is owner ''"


def test_a_refused_upload_changes_nothing_for_the_others(chunky):
    chunky.CHUNKY_REDIS_MAX_UPLOADS_IN_FLIGHT = 1
    api = ClientApi()
    upload_id = start(api, 20).data["upload_id"]
    assert start(api, 20).status == 429
    data = b"0123456789" + bytes(range(10))
    complete(api, upload_id, data)


def test_a_sliding_expiration_moves_the_index_entry(chunky):
    chunky.CHUNKY_REDIS_MAX_UPLOADS_IN_FLIGHT = 5
    chunky.CHUNKY_REDIS_SLIDING_EXPIRATION = True
    api = ClientApi()
    upload_id = start(api, 30).data["upload_id"]
    store = runtime.get_store()
    index = QuotaTracker(store.redis, prefix=store.prefix).keys("")[0]
    assert store.redis.zscore(index, upload_id) == store.get(upload_id).expires
    time.sleep(0.01)  # a later chunk: a later expiry
    reply = api.put(f"/upload/{upload_id}/", b"x" * 10, content_range="bytes 10-19/30")
    assert reply.status == 200, reply.body
    expires = store.get(upload_id).expires
    assert store.redis.zscore(index, upload_id) == expires


# -- the index itself --------------------------------------------------------------------------
class Clock:
    """Starts at the real time: the index's keys expire by Redis's own clock."""

    def __init__(self):
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tracker(store):
    clock = Clock()
    return QuotaTracker(store.redis, prefix=store.prefix, clock=clock), clock, store


def admit(tracker: QuotaTracker, store, upload_id: str, *, size=10, expires=None, **quota):
    expires = expires or int(tracker.clock() * 1000) + 3_600_000
    tracker.admit(
        "u1", upload_id, size=size, expires=expires, quota=Quota(**quota), statuses=store.statuses
    )


def test_the_owner_index_is_in_its_own_slot(tracker):
    quotas, _clock, store = tracker
    slots = {key_slot(key.encode()) for key in quotas.keys("42")}
    assert len(slots) == 1
    assert "{owner:42}" in quotas.keys("42")[0]
    assert quotas.keys("") != quotas.keys("42")


def test_stale_entries_go_at_their_expiry(tracker):
    quotas, clock, store = tracker
    expiry_ms = int(clock.now * 1000) + 5_000
    admit(quotas, store, "a" * 32, expires=expiry_ms, max_uploads=1)
    with pytest.raises(Exception) as refused:
        admit(quotas, store, "b" * 32, max_uploads=1)
    assert refused.value.status_code == 429
    clock.now += 5  # the first upload's expiry: it no longer counts
    admit(quotas, store, "b" * 32, max_uploads=1)
    assert quotas.in_flight("u1") == {"b" * 32: 10}


def test_a_missed_release_heals_before_a_refusal(tracker):
    quotas, _clock, store = tracker
    finished = "c" * 32
    store.create(Upload(upload_id=finished, owner="u1", status=COMPLETE, size=10))
    admit(quotas, store, finished, max_uploads=1)  # its release was never sent
    admit(quotas, store, "d" * 32, max_uploads=1)
    assert list(quotas.in_flight("u1")) == ["d" * 32]


def test_a_first_chunk_still_arriving_is_not_healed_away(tracker):
    quotas, _clock, store = tracker
    admit(quotas, store, "e" * 32, max_uploads=1)  # no record yet: its first chunk is arriving
    with pytest.raises(Exception) as refused:
        admit(quotas, store, "f" * 32, max_uploads=1)
    assert refused.value.status_code == 429


def test_sizes_are_exact_and_admitting_again_updates_them(tracker):
    quotas, _clock, store = tracker
    big = (1 << 53) + 1  # beyond a double's integers: Lua must not do the arithmetic that stores
    admit(quotas, store, "g" * 32, size=big)
    admit(quotas, store, "h" * 32, size=0)
    admit(quotas, store, "h" * 32, size=5)
    assert store.redis.get(quotas.keys("u1")[2]) == str(big + 5).encode()
    quotas.release("u1", "g" * 32)
    assert quotas.in_flight("u1") == {"h" * 32: 5}
    assert store.redis.get(quotas.keys("u1")[2]) == b"5"
    admit(quotas, store, "h" * 32, size=5, max_bytes=5)  # its own earlier size is not counted twice
    with pytest.raises(Exception) as refused:
        admit(quotas, store, "h" * 32, size=6, max_bytes=5)
    assert refused.value.status_code == 413


def test_the_index_expires_with_its_last_entry_and_goes_when_empty(tracker):
    quotas, clock, store = tracker
    now_ms = int(clock.now * 1000)
    admit(quotas, store, "i" * 32, expires=now_ms + 60_000)
    admit(quotas, store, "j" * 32, expires=now_ms + 90_000)
    for key in quotas.keys("u1"):
        assert 80_000 < store.redis.pttl(key) <= 90_000
    quotas.release("u1", "i" * 32)
    quotas.release("u1", "j" * 32)
    assert not any(store.redis.exists(key) for key in quotas.keys("u1"))


def test_sliding_expiration_keeps_an_upload_counted(tracker):
    quotas, clock, store = tracker
    now_ms = int(clock.now * 1000)
    admit(quotas, store, "k" * 32, expires=now_ms + 1_000, max_uploads=1)
    quotas.touch("u1", "k" * 32, now_ms + 10_000)
    quotas.touch("u1", "z" * 32, now_ms + 10_000)  # not tracked: not added
    clock.now += 5
    with pytest.raises(Exception) as refused:
        admit(quotas, store, "l" * 32, max_uploads=1)
    assert refused.value.status_code == 429


def test_an_upload_of_unknown_length_counts_no_byte_until_declared(chunky):
    """A deferred length counts 0 bytes against the quota (not its -1, nor any byte)."""
    from chunky_redis.core.uploads import UploadService

    base = runtime.get_service()
    store = base.store
    service = UploadService(
        store=store,
        storage=base.storage,
        policy=base.policy,
        on_complete=lambda upload: None,
        quotas=QuotaTracker(store.redis, prefix=store.prefix),
    )
    quota = Quota(max_bytes=100)
    deferred = service.create(owner="q", length=None, max_bytes=None, quota=quota)
    assert in_flight("q") == {deferred.upload_id: 0}
    service.create(owner="q", length=100, max_bytes=None, quota=quota)  # fits exactly
