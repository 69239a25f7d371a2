"""tus-js-client 4.3.1 (package.json, under node) in its IETF draft modes against the bundled
site under gunicorn, with the real Redis and a Celery worker process.

`ietf-draft-03` sends Upload-Draft-Interop-Version 5 and appends without a Content-Type;
`ietf-draft-05` sends 6 and `application/partial-upload` (its lib/upload.js). Both create with
`Upload-Complete: ?0` and `Upload-Length`, append with `Upload-Offset`, read the offset back with
HEAD to resume, and need `Upload-Offset` on every 2xx, the completing one included.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.processes import (
    REPO,
    SiteProcess,
    WorkerProcess,
    completed_signals,
    live_env,
    wait_for,
)

pytestmark = [pytest.mark.live, pytest.mark.slow]

SCRIPT = REPO / "tests" / "support" / "tus_js_ietf.mjs"
ORIGIN = "http://page.example"
PROTOCOLS = {"ietf-draft-03": "5", "ietf-draft-05": "6"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if shutil.which("node") is None or not (REPO / "node_modules" / "tus-js-client").exists():
        pytest.fail("node and `npm ci` (package.json's tus-js-client) are needed")
    env = live_env(tmp_path_factory.mktemp("rufh-live"), CORS_ALLOWED_ORIGINS=ORIGIN)
    with SiteProcess(env, workers=2) as server, WorkerProcess(env):
        yield server, env


def run_client(site, file: Path, **options: object) -> dict:
    server, _ = site
    args = {"endpoint": server.url + "/resumable/", "file": str(file), **options}
    done = subprocess.run(
        ["node", str(SCRIPT), json.dumps(args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def completed(site, upload_url: str) -> dict:
    _, env = site
    upload_id = upload_url.rstrip("/").rsplit("/", 1)[1]
    signals = wait_for(
        lambda: completed_signals(env, upload_id),
        timeout=60,
        message=f"upload_completed for {upload_id}",
    )
    assert len(signals) == 1
    return signals[0]


def final_bytes(site, signal: dict) -> bytes:
    _, env = site
    return (Path(env["MEDIA_ROOT"]) / signal["final_name"]).read_bytes()


def sample(tmp_path: Path, size: int) -> Path:
    path = tmp_path / f"sample-{size}.bin"
    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_chunked_upload_completes_and_signals_once(site, tmp_path, protocol):
    file = sample(tmp_path, 300_000)
    result = run_client(site, file, protocol=protocol, chunkSize=64 * 1024)
    assert result["ok"], result
    assert result["chunks"] == 5
    signal = completed(site, result["url"])
    assert final_bytes(site, signal) == file.read_bytes()
    assert signal["filename"] == "from-tus-js.bin"  # from tus-js-client's Upload-Metadata


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_interrupted_upload_resumes_from_head(site, tmp_path, protocol):
    file = sample(tmp_path, 200_000)
    first = run_client(site, file, protocol=protocol, chunkSize=50_000, stopAfterChunks=2)
    assert first.get("stopped"), first
    head = requests.head(
        first["url"], headers={"Upload-Draft-Interop-Version": PROTOCOLS[protocol]}, timeout=10
    )
    assert head.headers["Upload-Offset"] == "100000"
    again = run_client(site, file, protocol=protocol, chunkSize=50_000, uploadUrl=first["url"])
    assert again["ok"] and again["url"] == first["url"], again
    assert final_bytes(site, completed(site, first["url"])) == file.read_bytes()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_abort_true_cancels_the_upload(site, tmp_path, protocol):
    file = sample(tmp_path, 100_000)
    result = run_client(site, file, protocol=protocol, chunkSize=40_000, terminateAfterChunks=1)
    assert result.get("terminated"), result
    head = requests.head(
        result["url"], headers={"Upload-Draft-Interop-Version": PROTOCOLS[protocol]}, timeout=10
    )
    assert head.status_code == 404


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("size", [1, 65536, 65537])
def test_body_size_edges(site, tmp_path, protocol, size):
    """One byte, exactly one chunk, one byte more (the empty file is the next test)."""
    file = sample(tmp_path, size)
    result = run_client(site, file, protocol=protocol, chunkSize=65536)
    assert result["ok"], result
    assert final_bytes(site, completed(site, result["url"])) == file.read_bytes()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_empty_file_completes_when_sent_during_creation(site, tmp_path, protocol):
    """With uploadDataDuringCreation the creation itself says Upload-Complete ?1. (Without it,
    tus-js-client creates the upload with ?0 and reports success without completing it.)"""
    file = sample(tmp_path, 0)
    result = run_client(site, file, protocol=protocol, uploadDataDuringCreation=True)
    assert result["ok"], result
    assert final_bytes(site, completed(site, result["url"])) == b""


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_data_during_creation_then_appends(site, tmp_path, protocol):
    file = sample(tmp_path, 150_000)
    result = run_client(
        site, file, protocol=protocol, chunkSize=60_000, uploadDataDuringCreation=True
    )
    assert result["ok"], result
    assert final_bytes(site, completed(site, result["url"])) == file.read_bytes()


def test_a_page_on_another_origin_may_speak_the_draft(site):
    """The bundled site's CORS allows the draft's request headers and exposes its answers'."""
    server, _ = site
    asked = "upload-complete, upload-offset, upload-length, upload-draft-interop-version"
    preflight = requests.options(
        server.url + "/resumable/",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": asked + ", content-digest, repr-digest",
        },
        timeout=10,
    )
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    for name in [*asked.split(", "), "content-digest", "repr-digest"]:
        assert name in allowed
    created = requests.post(
        server.url + "/resumable/",
        headers={"Origin": ORIGIN, "Upload-Complete": "?0", "Upload-Draft-Interop-Version": "8"},
        timeout=10,
    )
    exposed = created.headers["Access-Control-Expose-Headers"]
    for name in ("Location", "Upload-Offset", "Upload-Complete", "Upload-Limit", "Repr-Digest"):
        assert name in exposed


def test_an_append_cut_short_under_gunicorn_keeps_what_arrived(site, tmp_path):
    """4.4.2 SHOULD: the client goes away mid-body; the bytes that reached the server stay, the
    upload is not complete, and the rest appended from HEAD's offset completes it."""
    server, _ = site
    data = os.urandom(300_000)
    created = requests.post(
        server.url + "/resumable/",
        headers={"Upload-Complete": "?0", "Upload-Length": str(len(data))},
        timeout=10,
    )
    location = created.headers["Location"]
    path = location.split(str(server.port), 1)[1]
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Upload-Offset: 0\r\nUpload-Complete: ?1\r\n"
        f"Content-Type: application/partial-upload\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + data[:120_000])
    # gunicorn sees the connection end and the view records the prefix it read.
    offset = wait_for(
        lambda: int(requests.head(location, timeout=10).headers["Upload-Offset"]) or None,
        timeout=30,
        message="the prefix recorded",
    )
    state = requests.head(location, timeout=10)
    assert 0 < offset <= 120_000 and state.headers["Upload-Complete"] == "?0"
    done = requests.patch(
        location,
        data=data[offset:],
        headers={
            "Upload-Offset": str(offset),
            "Upload-Complete": "?1",
            "Content-Type": "application/partial-upload",
        },
        timeout=30,
    )
    assert done.status_code == 200, done.text
    assert final_bytes(site, completed(site, location)) == data
