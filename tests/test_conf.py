"""Every CHUNKY_REDIS_* setting: its default, and that it is read at access time."""

from datetime import timedelta

import pytest

from chunky_redis.conf import Settings, as_timedelta, conf

DEFAULTS = {
    "REDIS_URL": None,
    "REDIS_ALIAS": None,
    "KEY_PREFIX": "chunky",
    "WAIT_REPLICAS": 0,
    "WAIT_TIMEOUT": timedelta(seconds=1),
    "REDIS_SOCKET_TIMEOUT": timedelta(seconds=5),
    "REDIS_CONNECT_TIMEOUT": timedelta(seconds=2),
    "FSYNC": True,
    "SYNC_EVERY": 0,
    "BLOCK_SIZE": 1 << 20,
    "FINAL_STORAGE": None,
    "CHUNK_STORAGE": "filesystem",
    "S3_PART_SIZE": None,
    "FINAL_NAME_TEMPLATE": "chunky_redis/{upload_id}/{filename}",
    "EXPIRATION": timedelta(days=1),
    "SLIDING_EXPIRATION": False,
    "EXPIRED_RETENTION": timedelta(days=1),
    "COMPLETED_RETENTION": timedelta(days=7),
    "LOCK_TIMEOUT": timedelta(seconds=30),
    "LOCK_REQUEST_TIMEOUT": timedelta(seconds=5),
    "FINALIZE_LEASE": timedelta(seconds=30),
    "REQUEUE_AFTER": timedelta(minutes=1),
    "FINALIZE_MAX_RETRIES": 8,
    "SWEEP_INTERVAL": timedelta(minutes=5),
    "ORPHAN_GRACE": timedelta(hours=1),
    "MAX_BYTES": None,
    "MAX_UPLOADS_IN_FLIGHT": None,
    "MAX_BYTES_IN_FLIGHT": None,
    "MAX_JSON_BODY": 32 << 20,
    "CHECKSUM_ALGORITHM": "md5",
    "ALLOW_ANONYMOUS": False,
    "VERIFY_STORED_BYTES": False,
    "TASK_QUEUE": None,
    "METRICS": False,
    "METRICS_TOKEN": None,
    "METRICS_WORKER_PORT": None,
}


@pytest.mark.parametrize("name, default", DEFAULTS.items())
def test_defaults(settings, name, default):
    if hasattr(settings, "CHUNKY_REDIS_" + name):
        delattr(settings, "CHUNKY_REDIS_" + name)
    assert getattr(conf, name) == default


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("KEY_PREFIX", "other", "other"),
        ("EXPIRATION", 90, timedelta(seconds=90)),
        ("EXPIRATION", 0.05, timedelta(milliseconds=50)),
        ("LOCK_TIMEOUT", timedelta(seconds=5), timedelta(seconds=5)),
        ("MAX_BYTES", 1024, 1024),
        ("ALLOW_ANONYMOUS", True, True),
        ("CHECKSUM_ALGORITHM", "sha256", "sha256"),
        ("CHUNK_STORAGE", "s3", "s3"),
    ],
)
def test_overrides_are_read_at_access_time(settings, name, value, expected):
    before = getattr(conf, name)  # read, and kept, before the change
    setattr(settings, "CHUNKY_REDIS_" + name, value)
    assert getattr(conf, name) == expected != before


def test_upload_dir_falls_back_to_media_root(settings):
    del settings.CHUNKY_REDIS_UPLOAD_DIR
    settings.MEDIA_ROOT = "/srv/media"
    assert conf.UPLOAD_DIR == "/srv/media/chunky_uploads"
    settings.MEDIA_ROOT = ""
    assert conf.UPLOAD_DIR == ""
    settings.CHUNKY_REDIS_UPLOAD_DIR = "/shared/chunks"
    assert conf.UPLOAD_DIR == "/shared/chunks"


def test_as_timedelta_refuses_other_types():
    with pytest.raises(TypeError):
        as_timedelta("10")
    with pytest.raises(TypeError):
        as_timedelta(True)


def test_every_setting_is_listed_here():
    properties = {name for name, value in vars(Settings).items() if isinstance(value, property)}
    assert properties - {"UPLOAD_DIR"} == set(DEFAULTS)
