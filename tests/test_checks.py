"""One test per system check id."""

import sys

import pytest

from chunky_redis import checks


def ids() -> list[str]:
    return [message.id for message in checks.check_settings()]


def test_default_test_settings_are_clean(settings):
    settings.DEBUG = True  # W002 is about production only
    assert ids() == []


def test_e001_unknown_algorithm(settings):
    settings.CHUNKY_REDIS_CHECKSUM_ALGORITHM = "crc32"
    assert "chunky_redis.E001" in ids()


def test_e050_chunked_upload_mounted_with_another_digest(settings):
    settings.DEBUG = True
    settings.CHUNKY_REDIS_CHECKSUM_ALGORITHM = "sha256"
    assert ids() == ["chunky_redis.E050"]  # tests/urls.py mounts it at chunked/
    settings.ROOT_URLCONF = "chunky_redis.urls"  # the chunky dialect alone: sha256 is fine
    assert ids() == []
    settings.ROOT_URLCONF = "tests.urls"
    settings.CHUNKY_REDIS_CHECKSUM_ALGORITHM = "md5"
    assert ids() == []


def test_w001_no_incremental_checksum(settings, monkeypatch):
    monkeypatch.setattr(checks, "incremental_available", lambda algorithm: False)
    assert "chunky_redis.W001" in ids()


def test_e002_no_upload_directory(settings):
    del settings.CHUNKY_REDIS_UPLOAD_DIR
    settings.MEDIA_ROOT = ""
    assert "chunky_redis.E002" in ids()


@pytest.mark.parametrize("value", [0, -5, "1 day", [1]])
def test_e003_bad_duration(settings, value):
    settings.CHUNKY_REDIS_LOCK_TIMEOUT = value
    assert "chunky_redis.E003" in ids()


@pytest.mark.parametrize("name", ["REDIS_SOCKET_TIMEOUT", "REDIS_CONNECT_TIMEOUT"])
def test_e003_bad_redis_timeout(settings, name):
    setattr(settings, "CHUNKY_REDIS_" + name, 0)
    assert "chunky_redis.E003" in ids()


@pytest.mark.parametrize("value", [0, -1, 1.5, "10"])
def test_e004_bad_max_bytes(settings, value):
    settings.CHUNKY_REDIS_MAX_BYTES = value
    assert "chunky_redis.E004" in ids()


def test_e005_alias_must_be_a_django_redis_cache(settings):
    settings.CHUNKY_REDIS_REDIS_ALIAS = "default"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert "chunky_redis.E005" in ids()
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/15",
        }
    }
    assert "chunky_redis.E005" not in ids()


@pytest.mark.parametrize("value", ["no.such.Storage", "missing-alias"])
def test_e006_final_storage_must_load(settings, value):
    settings.CHUNKY_REDIS_FINAL_STORAGE = value
    assert "chunky_redis.E006" in ids()


def test_e006_accepts_a_storages_alias_and_a_class(settings):
    settings.CHUNKY_REDIS_FINAL_STORAGE = "django.core.files.storage.FileSystemStorage"
    assert "chunky_redis.E006" not in ids()
    settings.CHUNKY_REDIS_FINAL_STORAGE = "default"
    assert "chunky_redis.E006" not in ids()


@pytest.mark.parametrize("name", ["BLOCK_SIZE", "MAX_JSON_BODY"])
def test_e007_sizes_must_be_positive_integers(settings, name):
    setattr(settings, "CHUNKY_REDIS_" + name, 0)
    assert "chunky_redis.E007" in ids()


@pytest.mark.parametrize("value", [-1, "64M", 1.5, True])
def test_e080_sync_every_is_zero_or_a_byte_count(settings, value):
    settings.CHUNKY_REDIS_SYNC_EVERY = value
    assert "chunky_redis.E080" in ids()


@pytest.mark.parametrize("value", [0, 16 << 20])
def test_e080_accepts_zero_and_a_byte_count(settings, value):
    settings.CHUNKY_REDIS_SYNC_EVERY = value
    assert "chunky_redis.E080" not in ids()


@pytest.mark.parametrize("template", ["{filename}", "uploads/{upload_id}/{user}", "{upload_id"])
def test_e008_final_name_template(settings, template):
    settings.CHUNKY_REDIS_FINAL_NAME_TEMPLATE = template
    assert "chunky_redis.E008" in ids()


def test_w002_embedded_redis_in_production(settings):
    settings.DEBUG = False
    settings.CHUNKY_REDIS_REDIS_URL = None
    assert "chunky_redis.W002" in ids()
    settings.CHUNKY_REDIS_REDIS_URL = "redis://127.0.0.1:6379/15"
    assert "chunky_redis.W002" not in ids()


def test_e010_embedded_redis_without_fakeredis(settings, monkeypatch):
    settings.CHUNKY_REDIS_REDIS_URL = None
    assert "chunky_redis.E010" not in ids()
    monkeypatch.setitem(sys.modules, "fakeredis", None)  # as if not installed
    [error] = [m for m in checks.check_settings() if m.id == "chunky_redis.E010"]
    assert "install the extra chunky_redis[embedded]" in error.msg
    settings.CHUNKY_REDIS_REDIS_URL = "redis://127.0.0.1:6379/15"  # a real Redis needs no fakeredis
    assert "chunky_redis.E010" not in ids()


def test_e011_alias_without_django_redis(settings, monkeypatch):
    settings.CHUNKY_REDIS_REDIS_ALIAS = "default"
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache"}}
    assert "chunky_redis.E011" not in ids()
    monkeypatch.setitem(sys.modules, "django_redis", None)
    [error] = [m for m in checks.check_settings() if m.id == "chunky_redis.E011"]
    assert "install the extra chunky_redis[django-redis]" in error.msg
    assert "chunky_redis.E010" not in ids()  # fakeredis is not needed with an alias


@pytest.mark.parametrize("missing", ["storages", "boto3"])
def test_e006_names_the_s3_extra_when_its_packages_are_missing(settings, monkeypatch, missing):
    for module in [m for m in sys.modules if m.partition(".")[0] in ("storages", "boto3")]:
        monkeypatch.delitem(sys.modules, module)  # imported afresh, so that the import fails
    monkeypatch.setitem(sys.modules, missing, None)
    settings.CHUNKY_REDIS_FINAL_STORAGE = "storages.backends.s3.S3Storage"
    [error] = [m for m in checks.check_settings() if m.id == "chunky_redis.E006"]
    assert "install the extra chunky_redis[s3]" in error.hint


S3_FINAL = "storages.backends.s3.S3Storage"


@pytest.mark.parametrize("value", ["nfs", "S3", "", None])
def test_e060_unknown_chunk_storage(settings, value):
    settings.CHUNKY_REDIS_CHUNK_STORAGE = value
    assert "chunky_redis.E060" in ids()


@pytest.mark.parametrize(
    "part, max_bytes",
    [
        (1 << 20, None),  # under S3's 5 MiB
        (6 << 30, None),  # over S3's 5 GiB
        ("8MiB", None),
        (8 << 20, 100 << 30),  # 10,000 parts of 8 MiB hold 78 GiB
    ],
)
def test_e061_s3_part_size(settings, part, max_bytes):
    settings.CHUNKY_REDIS_CHUNK_STORAGE = "s3"
    settings.CHUNKY_REDIS_FINAL_STORAGE = S3_FINAL
    settings.CHUNKY_REDIS_MAX_BYTES = max_bytes
    settings.CHUNKY_REDIS_S3_PART_SIZE = part
    assert "chunky_redis.E061" in ids()
    settings.CHUNKY_REDIS_S3_PART_SIZE = 11 << 20 if max_bytes else 5 << 20
    assert "chunky_redis.E061" not in ids()


def test_e062_s3_chunks_need_an_s3_final_storage(settings):
    settings.CHUNKY_REDIS_CHUNK_STORAGE = "s3"
    assert "chunky_redis.E062" in ids()  # the default storage is on disk
    settings.CHUNKY_REDIS_FINAL_STORAGE = S3_FINAL
    del settings.CHUNKY_REDIS_UPLOAD_DIR
    settings.MEDIA_ROOT = ""
    settings.DEBUG = True  # W002 is about production only
    assert ids() == []  # and no upload directory is needed


@pytest.mark.parametrize("missing", ["storages", "boto3"])
def test_e062_names_the_s3_extra(settings, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)
    settings.CHUNKY_REDIS_CHUNK_STORAGE = "s3"
    [error] = [m for m in checks.check_settings() if m.id == "chunky_redis.E062"]
    assert "install the extra chunky_redis[s3]" in error.msg


def test_e070_metrics_without_prometheus_client(settings, monkeypatch):
    settings.CHUNKY_REDIS_METRICS = True
    assert "chunky_redis.E070" not in ids()
    monkeypatch.setattr(
        "chunky_redis.checks.installed", lambda module: module != "prometheus_client"
    )
    assert "chunky_redis.E070" in ids()
    settings.CHUNKY_REDIS_METRICS = False  # off, the extra is not needed
    assert "chunky_redis.E070" not in ids()


@pytest.mark.parametrize("port", [0, 65536, "9808", True, -1])
def test_e071_worker_metrics_port(settings, port):
    settings.CHUNKY_REDIS_METRICS_WORKER_PORT = port
    assert "chunky_redis.E071" in ids()
    settings.CHUNKY_REDIS_METRICS_WORKER_PORT = 9808
    assert "chunky_redis.E071" not in ids()


@pytest.mark.parametrize("token", ["", "   ", 123])
def test_e072_metrics_token(settings, token):
    settings.CHUNKY_REDIS_METRICS_TOKEN = token
    assert "chunky_redis.E072" in ids()
    settings.CHUNKY_REDIS_METRICS_TOKEN = "s3cret"
    assert "chunky_redis.E072" not in ids()


def test_e073_multiprocess_directory_must_be_writable(settings, monkeypatch, tmp_path):
    settings.CHUNKY_REDIS_METRICS = True
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    assert "chunky_redis.E073" in ids()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    assert "chunky_redis.E073" not in ids()
