"""Real tus clients against a live server: the bundled site under gunicorn, the real Redis and a
Celery worker. tuspy (Python) and tus-js-client (node, from the project's package.json)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import requests

from tests.support.processes import (
    REPO,
    SiteProcess,
    WorkerProcess,
    live_env,
    read_signals,
    wait_for,
)

pytestmark = [pytest.mark.live, pytest.mark.slow]

NODE = shutil.which("node")
TUS_JS = REPO / "node_modules" / "tus-js-client"
SCRIPT = Path(__file__).parent / "support" / "tus_js_upload.js"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tus-live")
    env = live_env(tmp, CHUNKY_MAX_BYTES=str(64 << 20), CORS_ALLOWED_ORIGINS="*")
    port = int(os.environ.get("CHUNKY_TEST_TUS_PORT", "0")) or None  # else a free one
    with SiteProcess(env, port=port, workers=2) as site, WorkerProcess(env):
        yield site, env, tmp


def completed(env, upload_id: str) -> list[dict]:
    return [
        s
        for s in read_signals(env)
        if s["signal"] == "upload_completed" and s["upload_id"] == upload_id
    ]


def wait_completed_once(env, upload_id: str, data: bytes) -> dict:
    (done,) = wait_for(lambda: completed(env, upload_id), timeout=60, message="upload_completed")
    with open(Path(env["MEDIA_ROOT"]) / done["final_name"], "rb") as f:
        assert f.read() == data
    time.sleep(0.5)  # a second signal would have come by now
    assert len(completed(env, upload_id)) == 1
    return done


def id_of(url: str) -> str:
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[1]


def a_file(tmp: Path, name: str, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp / name
    path.write_bytes(data)
    return path, data


# -- tuspy --------------------------------------------------------------------------------------


def test_tuspy_small_chunks_with_checksums(live):
    from tusclient import client as tus_client

    site, env, tmp = live
    path, data = a_file(tmp, "tuspy.bin", 300_000)
    uploader = tus_client.TusClient(site.url + "/files/").uploader(
        str(path), chunk_size=64 * 1024, upload_checksum=True, metadata={"filename": "tuspy.bin"}
    )
    uploader.upload()
    assert uploader.offset == len(data)
    done = wait_completed_once(env, id_of(uploader.url), data)
    assert done["filename"] == "tuspy.bin"


RESUMING_CLIENT = textwrap.dedent(
    """
    import sys, time
    from tusclient import client
    from tusclient.storage.filestorage import FileStorage

    endpoint, path, db, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    uploader = client.TusClient(endpoint).uploader(
        path, chunk_size=16 * 1024, upload_checksum=True, store_url=True,
        url_storage=FileStorage(db), retries=3, retry_delay=1,
    )
    print("START", uploader.url, uploader.offset, flush=True)
    while uploader.offset < uploader.get_file_size():
        uploader.upload_chunk()
        print("OFFSET", uploader.offset, flush=True)
        time.sleep(pause)
    print("DONE", uploader.url, flush=True)
    """
)


def test_tuspy_resumes_after_the_client_is_killed(live):
    site, env, tmp = live
    path, data = a_file(tmp, "resume.bin", 400_000)
    db = tmp / "tuspy-urls.json"
    args = [sys.executable, "-c", RESUMING_CLIENT, site.url + "/files/", str(path), str(db)]
    first = subprocess.Popen([*args, "0.05"], stdout=subprocess.PIPE, text=True)
    try:
        for line in first.stdout:
            if line.startswith("OFFSET") and int(line.split()[1]) >= 100_000:
                break
        first.send_signal(signal.SIGKILL)  # mid-upload, between or during chunks
    finally:
        first.wait(timeout=30)
    second = subprocess.run([*args, "0"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    start = second.stdout.splitlines()[0].split()
    assert start[0] == "START" and start[1] != "None" and int(start[2]) >= 100_000
    assert second.stdout.splitlines()[-1] == f"DONE {start[1]}"
    wait_completed_once(env, id_of(start[1]), data)


# -- tus-js-client ------------------------------------------------------------------------------


def run_js(endpoint: str, file: Path, options: dict, timeout: float = 120, **config) -> list[dict]:
    if NODE is None or not TUS_JS.exists():
        pytest.fail("node and tus-js-client are needed: `npm ci` installs package.json's packages")
    payload = json.dumps({"endpoint": endpoint, "file": str(file), "options": options, **config})
    proc = subprocess.run(
        [NODE, str(SCRIPT), payload], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert not [e for e in events if e["event"] == "error"], (events, proc.stderr)
    return events


def success_url(events: list[dict]) -> str:
    (done,) = [e for e in events if e["event"] == "success"]
    return done["url"]


@pytest.mark.parametrize(
    "options",
    [
        {"chunkSize": 50_000},
        {"chunkSize": 50_000, "uploadDataDuringCreation": True},
        {"chunkSize": 50_000, "overridePatchMethod": True},
        {"chunkSize": 1 << 20},  # the whole file in one PATCH
        {"chunkSize": 30_000, "parallelUploads": 3},  # concatenation
    ],
    ids=["chunks", "data-during-creation", "method-override", "one-patch", "parallel"],
)
def test_tus_js_client(live, options):
    site, env, tmp = live
    path, data = a_file(tmp, "js.bin", 200_001)
    events = run_js(site.url + "/files/", path, {**options, "metadata": {"filename": "js.bin"}})
    url = success_url(events)
    statuses = [(e["method"], e["status"]) for e in events if e["event"] == "response"]
    if options.get("uploadDataDuringCreation"):
        assert statuses[0] == ("POST", 201) and ("POST", 201) in statuses
        assert len([s for s in statuses if s[0] == "PATCH"]) == 4  # 5 chunks, the first in the POST
    if options.get("overridePatchMethod"):
        assert all(method == "POST" for method, _ in statuses)
    if options.get("parallelUploads"):
        assert statuses.count(("POST", 201)) == 4  # three partial uploads and the final one
    assert wait_completed_once(env, id_of(url), data)["filename"] == "js.bin"


def test_tus_js_client_deferred_length(live):
    site, env, tmp = live
    path, data = a_file(tmp, "deferred.bin", 123_457)
    events = run_js(
        site.url + "/files/",
        path,
        {"chunkSize": 40_000, "uploadLengthDeferred": True},
        stream=True,
    )
    wait_completed_once(env, id_of(success_url(events)), data)


def test_tus_js_client_retries_while_another_request_holds_the_upload(live):
    """retryDelays: a PATCH refused 423 (the upload is locked) is retried after a HEAD."""
    site, env, tmp = live
    path, data = a_file(tmp, "retry.bin", 200_000)
    store = redis.Redis.from_url(env["REDIS_URL"])
    payload = json.dumps(
        {
            "endpoint": site.url + "/files/",
            "file": str(path),
            "options": {"chunkSize": 10_000, "retryDelays": [100, 300, 600, 1000, 2000]},
            "pauseMs": 30,
        }
    )
    proc = subprocess.Popen(
        [NODE, str(SCRIPT), payload], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if '"event":"url"' in line:
            upload_id = id_of(json.loads(line)["url"])
            key = f"{env['CHUNKY_TEST_KEY_PREFIX']}:{{{upload_id}}}:lock"
            wait_for(lambda: store.set(key, "the-test", nx=True, px=700), timeout=10)
            break
    lines += proc.stdout.readlines()
    assert proc.wait(timeout=120) == 0
    events = [json.loads(line) for line in lines if line.startswith("{")]
    statuses = [(e["method"], e["status"]) for e in events if e["event"] == "response"]
    assert ("PATCH", 423) in statuses
    assert statuses.index(("PATCH", 423)) < statuses.index(("HEAD", 200))
    wait_completed_once(env, id_of(success_url(events)), data)


def test_tus_js_client_abort_terminates(live):
    site, env, tmp = live
    path, data = a_file(tmp, "abort.bin", 500_000)
    events = run_js(
        site.url + "/files/",
        path,
        {"chunkSize": 20_000},
        pauseMs=20,
        abortAtBytes=100_000,
    )
    (aborted,) = [e for e in events if e["event"] == "aborted"]
    assert ("DELETE", 204) in [
        (e["method"], e["status"]) for e in events if e["event"] == "response"
    ]
    reply = requests.head(aborted["url"], headers={"Tus-Resumable": "1.0.0"}, timeout=10)
    assert reply.status_code == 404
    assert not (Path(env["CHUNKY_UPLOAD_DIR"]) / f"{id_of(aborted['url'])}.part").exists()
    assert completed(env, id_of(aborted["url"])) == []


def test_curl_style_cors_preflight_over_the_socket(live):
    site, env, tmp = live
    reply = requests.options(
        site.url + "/files/",
        headers={
            "Origin": "http://app.example",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "tus-resumable,upload-offset,content-type",
        },
        timeout=10,
    )
    assert reply.status_code == 200
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    created = requests.post(
        site.url + "/files/",
        headers={"Origin": "http://app.example", "Tus-Resumable": "1.0.0", "Upload-Length": "1"},
        timeout=10,
    )
    assert created.status_code == 201
    assert "location" in created.headers["Access-Control-Expose-Headers"].lower()


def test_a_patch_cut_short_keeps_what_arrived(live):
    """PATCH: the Server SHOULD store as much of the received data as possible."""
    site, env, tmp = live
    created = requests.post(
        site.url + "/files/",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": "100000"},
        timeout=10,
    )
    path = urlsplit(created.headers["Location"]).path
    data = os.urandom(100_000)
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as conn:
        head = (
            f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
            "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
            "Content-Length: 100000\r\n\r\n"
        )
        conn.sendall(head.encode() + data[:60_000])
        time.sleep(0.5)  # let the server write what it got before the connection goes
    offset = wait_for(
        lambda: int(
            requests.head(site.url + path, headers={"Tus-Resumable": "1.0.0"}, timeout=10).headers[
                "Upload-Offset"
            ]
        ),
        timeout=30,
        message="the received prefix recorded",
    )
    assert offset == 60_000
    reply = requests.patch(
        site.url + path,
        data=data[offset:],
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream",
        },
        timeout=30,
    )
    assert reply.status_code == 204 and reply.headers["Upload-Offset"] == "100000"
    wait_completed_once(env, id_of(path), data)
