"""Where the Redis connection comes from: a django-redis alias, a URL, or the embedded fakeredis."""

from __future__ import annotations

import os
import threading
import uuid

import fakeredis
import redis

from chunky_redis import runtime
from tests.support.api import ClientApi
from tests.support.processes import REAL_REDIS_URL


def test_a_django_redis_alias_is_used(settings, tmp_path):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "chunky": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": REAL_REDIS_URL},
    }
    settings.CHUNKY_REDIS_REDIS_ALIAS = "chunky"
    settings.CHUNKY_REDIS_REDIS_URL = "redis://127.0.0.1:1/0"  # the alias wins over the URL
    settings.CHUNKY_REDIS_KEY_PREFIX = prefix = f"chunky-test-{uuid.uuid4().hex[:12]}"
    settings.CHUNKY_REDIS_UPLOAD_DIR = str(tmp_path)
    settings.CHUNKY_REDIS_ALLOW_ANONYMOUS = True
    reply = ClientApi().put("/upload/", b"hello", content_range="bytes 0-4/10")
    assert reply.status == 200, reply.body
    real = redis.Redis.from_url(REAL_REDIS_URL)
    key = f"{prefix}:{{{reply.data['upload_id']}}}:upload"
    try:
        assert real.hget(key, "offset") == b"5"
    finally:
        real.delete(key)
        runtime.get_store().expiries.remove(reply.data["upload_id"])


def test_a_url_is_used(settings):
    settings.CHUNKY_REDIS_REDIS_URL = REAL_REDIS_URL
    client = runtime.get_redis()
    assert not isinstance(client, fakeredis.FakeRedis)
    assert client.connection_pool.connection_kwargs["db"] == 15
    assert runtime.get_redis() is client  # one client (and pool) per URL per process


def test_the_embedded_default_is_one_server_shared_by_threads(settings):
    settings.CHUNKY_REDIS_REDIS_URL = None
    assert runtime.using_embedded_redis()
    key = f"chunky-test-{uuid.uuid4().hex}"
    runtime.get_redis().set(key, "seen")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(runtime.get_redis().get(key)))
    thread.start()
    thread.join()
    assert seen == [b"seen"]
    runtime.get_redis().delete(key)


def test_the_views_share_one_service_per_process_until_a_setting_changes(settings, tmp_path):
    settings.CHUNKY_REDIS_REDIS_URL = None
    settings.CHUNKY_REDIS_CHECKSUM_ALGORITHM = "md5"
    service = runtime.shared_service()
    assert runtime.shared_service() is service
    seen = []
    thread = threading.Thread(target=lambda: seen.append(runtime.shared_service()))
    thread.start()
    thread.join()
    assert seen == [service]  # one for every thread of the process
    settings.CHUNKY_REDIS_CHECKSUM_ALGORITHM = "sha256"  # setting_changed: built again
    rebuilt = runtime.shared_service()
    assert rebuilt is not service and rebuilt.policy.algorithm == "sha256"


def test_a_forked_child_builds_its_own_service(settings):
    settings.CHUNKY_REDIS_REDIS_URL = None
    parent = runtime.shared_service()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its service must not be the parent's object
        os.close(read)
        os.write(write, b"1" if runtime._shared_service is None else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.waitpid(pid, 0)
    os.close(read)
    assert answer == b"1"
    assert runtime.shared_service() is parent
