"""Redis URLs for one server, a cluster and Sentinel; their settings and system checks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.cluster import RedisCluster
from redis.sentinel import SentinelConnectionPool

from chunky_redis import checks, runtime
from chunky_redis.conf import conf
from chunky_redis.core.redis_clients import (
    CLUSTER,
    SENTINEL,
    SINGLE,
    celery_broker_for,
    client_from_url,
    parse,
)
from chunky_redis.exceptions import StoreUnavailable


def test_a_single_server_url_is_redis_pys_own():
    where = parse("rediss://:secret@cache:6380/3?socket_timeout=2.5")
    assert where.kind == SINGLE
    assert where.options["db"] == 3 and where.options["socket_timeout"] == 2.5


def test_cluster_urls():
    where = parse(
        "redis+cluster://user:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002/0?socket_timeout=3"
    )
    assert where.kind == CLUSTER
    assert where.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))
    assert where.options == {"username": "user", "password": "p@ss", "socket_timeout": 3.0}
    assert parse("rediss+cluster://node:7000").options == {"ssl": True}


def test_sentinel_urls():
    where = parse("redis+sentinel://:pw@s1:26380,s2/mymaster/2?sentinel_password=spw")
    assert where.kind == SENTINEL
    assert where.nodes == (("s1", 26380), ("s2", 26379))
    assert (where.service, where.db) == ("mymaster", 2)
    assert where.options == {"password": "pw", "sentinel_password": "spw"}
    assert parse("redis+sentinel://s1/mymaster").db == 0


@pytest.mark.parametrize(
    "url, complaint",
    [
        ("memcached://host", "unknown scheme"),
        ("redis+cluster://host:7000/1", "only database 0"),
        ("redis+cluster://host:port", "port must be a number"),
        ("redis+cluster://:7000", "missing host"),
        ("redis+sentinel://s1:26379", "name the Sentinel service"),
        ("redis+sentinel://s1:26379/mymaster/x", "database must be a number"),
        ("redis+cluster://host?socket_timeout=soon", "invalid value for 'socket_timeout'"),
    ],
)
def test_bad_urls_say_what_is_wrong(url, complaint):
    with pytest.raises(ValueError, match=complaint):
        parse(url)


def test_clients_built_from_urls():
    sentinel = client_from_url("redis+sentinel://127.0.0.1:1/mymaster/4", socket_timeout=1)
    assert isinstance(sentinel.connection_pool, SentinelConnectionPool)
    assert sentinel.connection_pool.service_name == "mymaster"
    assert sentinel.connection_pool.connection_kwargs["db"] == 4
    # a cluster client asks the seeds for the slots at once: nobody at port 1 is a 503
    with pytest.raises(StoreUnavailable):
        runtime._client_for_url("redis+cluster://127.0.0.1:1", 1.0, 1.0)


@pytest.mark.live
def test_a_cluster_url_builds_a_cluster_client(settings):
    from tests.conftest import local_deployment

    settings.CHUNKY_REDIS_REDIS_URL = local_deployment("cluster").url
    assert isinstance(runtime.get_redis(), RedisCluster)


def test_wait_settings(settings):
    assert (conf.WAIT_REPLICAS, conf.WAIT_TIMEOUT) == (0, timedelta(seconds=1))
    settings.CHUNKY_REDIS_WAIT_REPLICAS = 2
    settings.CHUNKY_REDIS_WAIT_TIMEOUT = 0.25
    assert (conf.WAIT_REPLICAS, conf.WAIT_TIMEOUT) == (2, timedelta(milliseconds=250))
    settings.CHUNKY_REDIS_REDIS_URL = "redis://127.0.0.1:1/0"
    store = runtime.get_store()
    assert (store.wait_replicas, store.wait_timeout_ms) == (2, 250)


def ids() -> list[str]:
    return [message.id for message in checks.check_settings()]


@pytest.mark.parametrize("url", ["redis+cluster://h:7000/2", "redis+sentinel://h", "http://h"])
def test_e020_bad_redis_url(settings, url):
    settings.CHUNKY_REDIS_REDIS_URL = url
    assert "chunky_redis.E020" in ids()


@pytest.mark.parametrize("url", ["redis+cluster://h:7000", "redis+sentinel://h/m/0"])
def test_e020_good_redis_urls(settings, url):
    settings.CHUNKY_REDIS_REDIS_URL = url
    assert "chunky_redis.E020" not in ids()


@pytest.mark.parametrize("prefix", ["{app}", "app}", "", 7])
def test_e021_key_prefix_without_braces(settings, prefix):
    settings.CHUNKY_REDIS_KEY_PREFIX = prefix
    assert "chunky_redis.E021" in ids()


@pytest.mark.parametrize("value", [-1, 1.5, "1", True])
def test_e022_bad_wait_replicas(settings, value):
    settings.CHUNKY_REDIS_REDIS_URL = "redis://h:6379/0"
    settings.CHUNKY_REDIS_WAIT_REPLICAS = value
    assert "chunky_redis.E022" in ids()


def test_e022_wait_needs_a_real_redis(settings):
    settings.CHUNKY_REDIS_WAIT_REPLICAS = 1
    settings.CHUNKY_REDIS_REDIS_URL = None
    assert "chunky_redis.E022" in ids()
    settings.CHUNKY_REDIS_REDIS_URL = "redis://h:6379/0"
    assert "chunky_redis.E022" not in ids()


def test_e003_covers_the_wait_timeout(settings):
    settings.CHUNKY_REDIS_WAIT_TIMEOUT = 0
    assert "chunky_redis.E003" in ids()


@pytest.mark.live
def test_a_django_redis_sentinel_alias_follows_the_primary(settings, tmp_path):
    """The README's django-redis Sentinel recipe, against the session's Sentinels."""
    from tests.conftest import local_deployment
    from tests.support.api import ClientApi

    deployment = local_deployment("sentinel")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "chunky": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{deployment.SERVICE}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": [("127.0.0.1", port) for port in deployment.sentinel_ports],
            },
        },
    }
    settings.CHUNKY_REDIS_REDIS_ALIAS = "chunky"
    settings.CHUNKY_REDIS_UPLOAD_DIR = str(tmp_path)
    settings.CHUNKY_REDIS_ALLOW_ANONYMOUS = True
    settings.CHUNKY_REDIS_KEY_PREFIX = "chunky-test-sentinel-alias"
    reply = ClientApi().put("/upload/", b"hello", content_range="bytes 0-4/10")
    assert reply.status == 200, reply.body
    upload_id = reply.data["upload_id"]
    primary = deployment.primary.client()
    store = runtime.get_store()
    try:
        assert primary.hget(store.record_key(upload_id), "offset") == b"5"
    finally:
        primary.delete(store.record_key(upload_id))
        store.expiries.remove(upload_id)


def test_celery_broker_for_each_kind_of_redis():
    assert celery_broker_for("redis://r:6379/1") == ("redis://r:6379/1", {})
    assert celery_broker_for("redis+sentinel://:p%40w@s1:26379,s2:26380/mymaster/2") == (
        "sentinel://:p%40w@s1:26379/2;sentinel://:p%40w@s2:26380/2",
        {"master_name": "mymaster"},
    )
    assert celery_broker_for("redis+sentinel://s1/m?sentinel_password=x")[1] == {
        "master_name": "m",
        "sentinel_kwargs": {"password": "x"},
    }
    with pytest.raises(ValueError, match="Celery cannot use Redis Cluster"):
        celery_broker_for("redis+cluster://n1:7000")
