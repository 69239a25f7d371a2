"""Expiry: 410 on every endpoint once an upload's time is up (millisecond TTLs, no long sleeps)."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime

import pytest

from tests.support.api import ClientApi, LiveApi
from tests.support.processes import SiteProcess, live_env, wait_for


def expire_everywhere(api) -> None:
    data = b"0123456789" * 10
    upload_id = api.put("/upload/", data[:50], content_range="bytes 0-49/100").data["upload_id"]
    wait_for(
        lambda: api.get(f"/upload/{upload_id}/").status == 410,
        timeout=5,
        interval=0.01,
        message="expiry",
    )
    for reply in (
        api.get(f"/upload/{upload_id}/"),
        api.put(f"/upload/{upload_id}/", data[50:], content_range="bytes 50-99/100"),
        api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()}),
    ):
        assert reply.status == 410, reply.body
        assert reply.data["code"] == "expired"


def test_expired_upload_is_gone_everywhere(chunky):
    chunky.CHUNKY_REDIS_EXPIRATION = 0.05  # 50 ms
    expire_everywhere(ClientApi())


def test_a_fully_received_upload_cannot_be_completed_once_expired(chunky):
    chunky.CHUNKY_REDIS_EXPIRATION = 0.05
    api = ClientApi()
    data = b"x" * 100
    upload_id = api.put("/upload/", data).data["upload_id"]
    wait_for(
        lambda: api.get(f"/upload/{upload_id}/").status == 410,
        timeout=5,
        interval=0.01,
        message="expiry",
    )
    reply = api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()})
    assert reply.status == 410


def test_expired_records_are_forgotten_after_the_retention(chunky):
    chunky.CHUNKY_REDIS_EXPIRATION = 0.02
    chunky.CHUNKY_REDIS_EXPIRED_RETENTION = 0.05
    api = ClientApi()
    upload_id = api.put("/upload/", b"abc").data["upload_id"]
    wait_for(
        lambda: api.get(f"/upload/{upload_id}/").status == 404,
        timeout=5,
        interval=0.01,
        message="forgetting",
    )


def test_sliding_expiration_moves_forward_with_each_chunk(chunky):
    chunky.CHUNKY_REDIS_SLIDING_EXPIRATION = True
    api = ClientApi()
    first = api.put("/upload/", b"a" * 10, content_range="bytes 0-9/20").data
    time.sleep(0.01)  # let the clock move by more than a millisecond
    second = api.put(
        f"/upload/{first['upload_id']}/", b"b" * 10, content_range="bytes 10-19/20"
    ).data
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    assert parse(second["expires"]) > parse(first["expires"])
    chunky.CHUNKY_REDIS_SLIDING_EXPIRATION = False
    third = api.put("/upload/", b"a" * 10, content_range="bytes 0-9/20").data
    fourth = api.put(
        f"/upload/{third['upload_id']}/", b"b" * 10, content_range="bytes 10-19/20"
    ).data
    assert fourth["expires"] == third["expires"]


@pytest.mark.live
def test_expiry_and_authentication_on_a_server(tmp_path):
    env = live_env(tmp_path, CHUNKY_EXPIRATION_SECONDS="0.2")
    with SiteProcess(env, workers=1) as site:
        expire_everywhere(LiveApi(site.url))
    env = live_env(tmp_path, CHUNKY_ALLOW_ANONYMOUS="0")
    with SiteProcess(env, workers=1, name="private") as site:
        api = LiveApi(site.url)
        for reply in (api.put("/upload/", b"abc"), api.get(f"/upload/{'a' * 32}/")):
            assert reply.status == 403 and reply.data["code"] == "not_authenticated"
