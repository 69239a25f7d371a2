"""The Prometheus metrics, read from /metrics after real uploads through Django's test client,
on fakeredis and on the real Redis (the live servers and worker: test_metrics_live.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import pytest
from django.test import Client

from chunky_redis.core import errors as exc
from chunky_redis.core.filesystem import FileSystemChunkStorage
from chunky_redis.processing.completion import finalize, purge_expired_uploads
from tests.support.processes import REPO
from tests.support.scrape import parse, value

CHUNK = 100 << 10


@pytest.fixture
def metrics(chunky):
    chunky.CHUNKY_REDIS_METRICS = True
    return chunky


@pytest.fixture
def queued(metrics, monkeypatch):
    """Completions are recorded here instead of running the task."""
    ids: list[str] = []
    monkeypatch.setattr("chunky_redis.processing.completion.enqueue_finalize", ids.append)
    return ids


def scrape(client: Client, **headers: str):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return parse(response.content.decode())


def put(client: Client, data: bytes, start: int, total: int, upload_id: str | None = None):
    path = f"/upload/{upload_id}/" if upload_id else "/upload/?filename=f.bin"
    end = start + len(data) - 1
    return client.put(
        path,
        data=data,
        content_type="application/octet-stream",
        headers={"Content-Range": f"bytes {start}-{end}/{total}"},
    )


def upload(client: Client, data: bytes, *, complete: bool = True) -> str:
    upload_id = None
    for start in range(0, len(data), CHUNK):
        r = put(client, data[start : start + CHUNK], start, len(data), upload_id)
        assert r.status_code == 200, r.json()
        upload_id = r.json()["upload_id"]
    assert upload_id
    if complete:
        r = client.post(f"/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()})
        assert r.status_code == 200, r.json()
    return upload_id


def delta(before, after, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_an_upload_is_counted_from_its_first_chunk_to_its_finalization(metrics, client):
    data = os.urandom(3 * CHUNK + 100)  # four chunks
    before = scrape(client)
    upload(client, data)  # Celery is eager here: finalized in the request
    after = scrape(client)
    assert delta(before, after, "chunky_redis_uploads_started_total") == 1
    assert delta(before, after, "chunky_redis_received_bytes_total") == len(data)
    assert delta(before, after, "chunky_redis_chunk_size_bytes_count") == 4
    assert delta(before, after, "chunky_redis_chunk_size_bytes_sum") == len(data)
    assert delta(before, after, "chunky_redis_chunk_size_bytes_bucket", le="65536.0") == 1
    assert delta(before, after, "chunky_redis_chunk_size_bytes_bucket", le="262144.0") == 4
    assert delta(before, after, "chunky_redis_chunk_duration_seconds_count") == 4
    assert delta(before, after, "chunky_redis_chunk_duration_seconds_sum") > 0
    assert delta(before, after, "chunky_redis_uploads_completed_total") == 1
    assert delta(before, after, "chunky_redis_uploads_failed_total") == 0
    complete = {"outcome": "complete"}
    assert delta(before, after, "chunky_redis_finalize_duration_seconds_count", **complete) == 1
    assert delta(before, after, "chunky_redis_finalize_queue_delay_seconds_count") == 1
    assert value(after, "chunky_redis_uploads_in_flight") == 0
    assert delta(before, after, "chunky_redis_refusals_total", code="offset_mismatch") == 0


def test_uploads_in_flight_and_processing_are_read_from_redis(metrics, client, queued):
    data = os.urandom(2 * CHUNK)
    metrics.CHUNKY_REDIS_EXPIRATION = 0.001
    upload(client, b"x" * 100, complete=False)  # expires at once, not swept: no longer in flight
    metrics.CHUNKY_REDIS_EXPIRATION = 3600
    first = upload(client, data, complete=False)
    upload(client, data, complete=False)
    samples = scrape(client)
    assert value(samples, "chunky_redis_uploads_in_flight") == 2
    assert value(samples, "chunky_redis_uploads_processing") == 0
    r = client.post(f"/upload/{first}/", {"md5": hashlib.md5(data).hexdigest()})
    assert r.status_code == 200 and queued == [first]
    samples = scrape(client)
    assert value(samples, "chunky_redis_uploads_in_flight") == 1
    assert value(samples, "chunky_redis_uploads_processing") == 1
    before = scrape(client)
    assert finalize(first).status == "complete"
    after = scrape(client)
    assert value(after, "chunky_redis_uploads_processing") == 0
    assert delta(before, after, "chunky_redis_uploads_completed_total") == 1
    waited = delta(before, after, "chunky_redis_finalize_queue_delay_seconds_sum")
    assert 0 <= waited < 60


def test_the_queue_delay_is_the_time_since_marking_processing(metrics, client, queued, store):
    upload_id = upload(client, os.urandom(100))
    # As if the task had waited in the queue for 30 s.
    store.redis.hset(store.record_key(upload_id), "queued", store.now() - 30_000)
    before = scrape(client)
    finalize(upload_id)
    after = scrape(client)
    waited = delta(before, after, "chunky_redis_finalize_queue_delay_seconds_sum")
    assert 30 <= waited < 40
    assert delta(before, after, "chunky_redis_finalize_queue_delay_seconds_bucket", le="10.0") == 0


def test_an_expired_upload_is_counted(metrics, client, store):
    metrics.CHUNKY_REDIS_EXPIRATION = 0.001
    upload(client, os.urandom(100), complete=False)
    metrics.CHUNKY_REDIS_EXPIRATION = 3600
    time.sleep(0.01)
    before = scrape(client)
    assert purge_expired_uploads().expired == 1
    after = scrape(client)
    assert delta(before, after, "chunky_redis_uploads_expired_total") == 1


def test_a_failed_finalization_is_counted(metrics, client, queued):
    upload_id = upload(client, os.urandom(100))
    os.remove(os.path.join(metrics.CHUNKY_REDIS_UPLOAD_DIR, upload_id + ".part"))
    before = scrape(client)
    assert finalize(upload_id).status == "failed"
    after = scrape(client)
    assert delta(before, after, "chunky_redis_uploads_failed_total") == 1
    assert delta(before, after, "chunky_redis_uploads_completed_total") == 0
    failed = {"outcome": "failed"}
    assert delta(before, after, "chunky_redis_finalize_duration_seconds_count", **failed) == 1


def test_a_finalization_error_counts_as_a_redis_or_storage_error(
    metrics, client, queued, monkeypatch
):
    upload_id = upload(client, os.urandom(100))
    before = scrape(client)
    with monkeypatch.context() as m:
        m.setattr(FileSystemChunkStorage, "truncate", _raise(OSError(5, "I/O error")))
        with pytest.raises(OSError):
            finalize(upload_id)
    with monkeypatch.context() as m:
        m.setattr("chunky_redis.core.store.UploadStore.transition", _raise(exc.StoreUnavailable()))
        with pytest.raises(exc.StoreUnavailable):
            finalize(upload_id)
    after = scrape(client)
    assert delta(before, after, "chunky_redis_storage_errors_total", role="worker") == 1
    assert delta(before, after, "chunky_redis_redis_errors_total", role="worker") == 1
    assert (
        delta(before, after, "chunky_redis_finalize_duration_seconds_count", outcome="error") == 2
    )


def test_a_sweep_that_fails_on_redis_counts_a_redis_error(metrics, client, monkeypatch):
    from chunky_redis.tasks import purge_expired_uploads as purge_task

    before = scrape(client)
    monkeypatch.setattr(
        "chunky_redis.core.store.UploadStore.due_expiries", _raise(exc.StoreUnavailable())
    )
    with pytest.raises(exc.StoreUnavailable):
        purge_task()
    monkeypatch.undo()
    after = scrape(client)
    assert delta(before, after, "chunky_redis_redis_errors_total", role="worker") == 1
    assert delta(before, after, "chunky_redis_storage_errors_total", role="worker") == 0


def _raise(error: BaseException):
    def fail(*args, **kwargs):
        raise error

    return fail


def test_a_lock_conflict_is_counted(metrics, client, store):
    data = os.urandom(2 * CHUNK)
    r = put(client, data[:CHUNK], 0, len(data))
    upload_id = r.json()["upload_id"]
    code, _ = store.acquire(upload_id, "", "another-request")  # another request writes it
    assert code == "ok"
    before = scrape(client)
    r = put(client, data[CHUNK:], CHUNK, len(data), upload_id)
    assert r.status_code == 409
    after = scrape(client)
    assert delta(before, after, "chunky_redis_lock_conflicts_total") == 1
    assert delta(before, after, "chunky_redis_refusals_total", code="locked") == 1
    assert delta(before, after, "chunky_redis_received_bytes_total") == 0


def test_refusals_are_counted_by_code(metrics, client):
    data = os.urandom(2 * CHUNK)
    upload_id = upload(client, data, complete=False)
    before = scrape(client)
    assert put(client, data[:CHUNK], 0, len(data), upload_id).status_code == 400
    after = scrape(client)
    assert delta(before, after, "chunky_redis_refusals_total", code="offset_mismatch") == 1
    assert delta(before, after, "chunky_redis_lock_conflicts_total") == 0


def test_a_storage_error_is_counted(metrics, client, monkeypatch):
    monkeypatch.setattr(
        FileSystemChunkStorage, "writer", _raise(exc.StorageError("Cannot write the chunk."))
    )
    before = scrape(client)
    assert put(client, b"x" * 10, 0, 10).status_code == 503
    after = scrape(client)
    assert delta(before, after, "chunky_redis_storage_errors_total", role="web") == 1
    assert delta(before, after, "chunky_redis_uploads_started_total") == 0


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
def test_a_redis_outage_is_counted_and_the_scrape_still_answers(metrics, client):
    from tests.support.processes import free_port

    before = scrape(client)
    url = metrics.CHUNKY_REDIS_REDIS_URL
    metrics.CHUNKY_REDIS_REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens
    try:
        assert put(client, b"x" * 10, 0, 10).status_code == 503
        during = scrape(client)  # without the Redis gauges, which it cannot read
        after = scrape(client)
    finally:
        metrics.CHUNKY_REDIS_REDIS_URL = url
    assert ("chunky_redis_uploads_in_flight", ()) not in during
    assert delta(before, after, "chunky_redis_redis_errors_total", role="web") == 1
    # (a scrape shows the failure to read the gauges from the next scrape on)
    assert delta(before, after, "chunky_redis_redis_errors_total", role="scrape") >= 1


def test_an_observer_that_fails_never_fails_the_chunk(metrics, client, monkeypatch):
    monkeypatch.setattr(
        "chunky_redis.metrics.PrometheusObserver.chunk_recorded", _raise(RuntimeError("bug"))
    )
    upload(client, os.urandom(2 * CHUNK))


def test_the_token_guards_the_metrics(metrics, client):
    metrics.CHUNKY_REDIS_METRICS_TOKEN = "s3cret"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "not_authenticated", headers
        assert r["WWW-Authenticate"].startswith("Bearer")
    scrape(client, Authorization="Bearer s3cret")


def test_only_get_and_head(metrics, client):
    r = client.post("/metrics")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    assert r["Allow"] == "GET, HEAD"
    assert client.head("/metrics/").status_code == 200


def test_nothing_is_counted_or_served_while_off(chunky, client):
    chunky.CHUNKY_REDIS_METRICS = True
    before = scrape(client)
    chunky.CHUNKY_REDIS_METRICS = False
    r = client.get("/metrics")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    upload(client, os.urandom(2 * CHUNK))
    chunky.CHUNKY_REDIS_METRICS = True
    after = scrape(client)
    for name in ("uploads_started", "received_bytes", "uploads_completed"):
        assert delta(before, after, f"chunky_redis_{name}_total") == 0, name


@pytest.mark.live  # a fresh interpreter
def test_prometheus_client_is_not_imported_while_off(tmp_path):
    """Off, an upload and its finalization never import prometheus_client."""
    script = f"""
import os, sys, hashlib
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django; django.setup()
from django.test import Client
from django.test.utils import override_settings, setup_test_environment
setup_test_environment()
with override_settings(CHUNKY_REDIS_UPLOAD_DIR={str(tmp_path)!r}, CHUNKY_REDIS_ALLOW_ANONYMOUS=True):
    c = Client()
    r = c.put("/upload/?filename=f", data=b"abc", content_type="application/octet-stream")
    assert r.status_code == 200, r.content
    r = c.post("/upload/" + r.json()["upload_id"] + "/", {{"md5": hashlib.md5(b"abc").hexdigest()}})
    assert r.status_code == 200, r.content
    assert c.get("/metrics").status_code == 404
print("prometheus_client" in sys.modules)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CHUNKY_TEST_TMP": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


DASHBOARD = REPO / "deploy" / "grafana" / "chunky_redis.json"


@pytest.mark.parametrize("backend", ["fakeredis"], indirect=True)
def test_the_dashboard_queries_only_metrics_that_exist_and_shows_every_one(metrics, client):
    import json
    import re

    from tests.support.scrape import family_names

    upload(client, os.urandom(100))
    response = client.get("/metrics")
    exposed = {n for n in family_names(response.content.decode()) if n.startswith("chunky_redis_")}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queried = {name for expr in exprs for name in re.findall(r"\bchunky_redis_\w+", expr)}
    assert queried, "no query names a metric"
    assert queried <= exposed, f"queries of metrics that do not exist: {queried - exposed}"
    # (prometheus_client's *_created series, outside multiprocess mode, are not ours to show)
    families = {
        line.split()[2]
        for line in response.content.decode().splitlines()
        if line.startswith("# HELP chunky_redis_") and not line.split()[2].endswith("_created")
    }
    shown = {f for f in families if any(name.startswith(f) for name in queried)}
    assert shown == families, f"metrics without a panel: {families - shown}"
