"""Shared fixtures.

``backend`` runs a test three times: on the embedded fakeredis, on the real Redis
at 127.0.0.1:6379 (db 15; each test uses its own key prefix, nothing is flushed),
and on a private 3-primary Redis Cluster started once per session on free ports.
``chunky`` points every CHUNKY_REDIS_* path at the test's own temp directory.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import redis

import tasks  # noqa: F401  (the bundled Celery app, configured from tests.settings: eager)
from chunky_redis import runtime
from tests.support import markers
from tests.support.markers import pytest_runtest_logfinish, pytest_runtest_setup  # noqa: F401
from tests.support.processes import LIVE_PREFIXES, REAL_REDIS_URL, require_real_redis

markers.install()  # a test that starts a process must be marked live (make test-fast)

BACKENDS = ["fakeredis", "redis", pytest.param("cluster", marks=pytest.mark.live)]
_started: dict = {}  # the session's private Redis deployments, started on first use


def local_deployment(kind: str):
    """The session's LocalCluster ("cluster") or LocalSentinel ("sentinel"), started once."""
    from tests.support.redis_cluster import LocalCluster
    from tests.support.redis_servers import LocalSentinel

    if kind not in _started:
        root = Path(tempfile.mkdtemp(prefix=f"chunky-{kind}-"))
        deployment = LocalCluster(root) if kind == "cluster" else LocalSentinel(root)
        _started[kind] = (deployment, root)  # stopped at the end even if it fails half-way
        deployment.start()
    return _started[kind][0]


@pytest.fixture(scope="session", autouse=True)
def _stop_local_deployments():
    yield
    for deployment, root in _started.values():
        deployment.stop()
        shutil.rmtree(root, ignore_errors=True)


def _real_redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REAL_REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    if request.param == "redis":
        require_real_redis()
    return request.param


def configure(settings, backend: str, tmp_path) -> None:
    """Point the CHUNKY_REDIS_* settings at this test's own key prefix and directories."""
    urls = {"redis": REAL_REDIS_URL, "fakeredis": None}
    settings.CHUNKY_REDIS_REDIS_URL = (
        urls[backend] if backend in urls else local_deployment(backend).url
    )
    settings.CHUNKY_REDIS_KEY_PREFIX = f"chunky-test-{uuid.uuid4().hex[:12]}"
    settings.CHUNKY_REDIS_UPLOAD_DIR = str(tmp_path / "chunks")
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.CHUNKY_REDIS_ALLOW_ANONYMOUS = True


def cleanup_keys(settings) -> None:
    store = runtime.get_store()
    keys = list(store.redis.scan_iter(match=f"{settings.CHUNKY_REDIS_KEY_PREFIX}:*"))
    if keys:
        store.redis.delete(*keys)


@pytest.fixture
def chunky(backend, settings, tmp_path):
    """Settings for one test: its own key prefix, upload directory and media root."""
    configure(settings, backend, tmp_path)
    yield settings
    cleanup_keys(settings)


@pytest.fixture(scope="session")
def local_s3_chunks():
    """A local S3 (moto's server) for the S3 chunk storage, started once (mark the test live)."""
    from tests.support.chunk_views import start_local_s3

    s3 = start_local_s3()
    yield s3
    s3.stop()


@pytest.fixture
def store(chunky):
    return runtime.get_store()


@pytest.fixture
def signal_log():
    """What the test receivers in tests/support/receivers.py got during the test."""
    from tests.support import receivers

    receivers.received.clear()
    yield receivers.received
    receivers.received.clear()


@pytest.fixture(scope="session", autouse=True)
def _forget_live_keys():
    """Delete what live processes left in the real Redis (records, kombu queues) after the session."""
    yield
    if not LIVE_PREFIXES or not _real_redis_available():
        return
    client = redis.Redis.from_url(REAL_REDIS_URL)
    for prefix in LIVE_PREFIXES:
        keys = list(
            client.scan_iter(match=f"*{prefix}*", count=1000)
        )  # records, queues, kombu bindings
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
