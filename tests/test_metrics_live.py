"""The metrics of real processes: gunicorn with 2 workers (multiprocess mode, the hooks of
deploy/gunicorn.conf.py) and a Celery worker serving its own on a port, scraped over HTTP
after real uploads."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

from tests.support.processes import (
    SiteProcess,
    WorkerProcess,
    free_port,
    live_env,
    read_signals,
    wait_for,
)
from tests.support.scrape import parse, value

pytestmark = [pytest.mark.live]

CHUNK = 256 << 10
UPLOADS = 6
MORE = 24  # at most, while one gunicorn worker has served every connection


def scrape(url: str, token: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return parse(response.text)


def upload(base: str, data: bytes) -> str:
    with requests.Session() as s:  # one keep-alive connection: its chunks may meet any worker
        upload_id = None
        for start in range(0, len(data), CHUNK):
            part = data[start : start + CHUNK]
            path = f"/upload/{upload_id}/" if upload_id else "/upload/?filename=f.bin"
            r = s.put(
                base + path,
                data=part,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"bytes {start}-{start + len(part) - 1}/{len(data)}",
                },
                timeout=60,
            )
            assert r.status_code == 200, r.text
            upload_id = r.json()["upload_id"]
        r = s.post(base + f"/upload/{upload_id}/", data={"md5": hashlib.md5(data).hexdigest()})
        assert r.status_code == 200, r.text
    assert upload_id
    return upload_id


def test_web_and_worker_processes_expose_what_they_counted(tmp_path):
    worker_port = free_port()
    env = live_env(
        tmp_path,
        CHUNKY_METRICS="1",
        CHUNKY_METRICS_TOKEN="scrape-me",
        CHUNKY_METRICS_WORKER_PORT=str(worker_port),
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    web_dir, worker_dir = tmp_path / "metrics-web", tmp_path / "metrics-worker"
    worker_dir.mkdir()
    web_dir.mkdir()
    (web_dir / "counter_1.db").write_bytes(b"a previous run's")  # gunicorn must clear it
    sizes = [3 * CHUNK + 1000 * (i + 1) for i in range(UPLOADS)]  # 4 chunks each
    with (
        SiteProcess({**env, "PROMETHEUS_MULTIPROC_DIR": str(web_dir)}, workers=2) as site,
        WorkerProcess({**env, "PROMETHEUS_MULTIPROC_DIR": str(worker_dir)}, concurrency=2),
    ):
        web = site.url + "/metrics"
        worker = f"http://127.0.0.1:{worker_port}/metrics"
        assert requests.get(web, timeout=10).status_code == 401  # the token guards it
        for size in sizes:
            upload(site.url, os.urandom(size))
        # The kernel may give every connection to the same gunicorn worker (it did, once in
        # many CI runs): more uploads, each on a new connection, until both have served one.
        while len(list(web_dir.glob("counter_*.db"))) < 2 and len(sizes) < UPLOADS + MORE:
            sizes.append(3 * CHUNK + 1000 * (len(sizes) + 1))
            upload(site.url, os.urandom(sizes[-1]))
        uploads = len(sizes)
        wait_for(
            lambda: (
                len([s for s in read_signals(env) if s.get("signal") == "upload_completed"])
                == uploads
            ),
            timeout=60,
            message="every upload finalized",
        )
        # Several scrapes: whichever gunicorn worker answers shows both workers' counts.
        for _ in range(4):
            samples = scrape(web, "scrape-me")
            assert value(samples, "chunky_redis_uploads_started_total") == uploads
            assert value(samples, "chunky_redis_received_bytes_total") == sum(sizes)
            assert value(samples, "chunky_redis_chunk_size_bytes_count") == 4 * uploads
            assert value(samples, "chunky_redis_chunk_duration_seconds_count") == 4 * uploads
            assert value(samples, "chunky_redis_uploads_in_flight") == 0
            assert value(samples, "chunky_redis_uploads_completed_total") == 0  # the worker's
        # Both gunicorn workers wrote samples (a file each in the directory).
        assert len(list(web_dir.glob("counter_*.db"))) == 2, sorted(web_dir.iterdir())
        samples = wait_for(
            lambda: (
                (s := scrape(worker))
                and value(s, "chunky_redis_uploads_completed_total") == uploads
                and s
            ),
            timeout=30,
            message="the worker's count",
        )
        complete = {"outcome": "complete"}
        assert value(samples, "chunky_redis_finalize_duration_seconds_count", **complete) == uploads
        assert value(samples, "chunky_redis_finalize_queue_delay_seconds_count") == uploads
        assert value(samples, "chunky_redis_uploads_failed_total") == 0
        assert value(samples, "chunky_redis_uploads_started_total") == 0  # the web's
        assert value(samples, "chunky_redis_uploads_processing") == 0
