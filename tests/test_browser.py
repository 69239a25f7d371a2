"""The demo page in a real browser.

Debian's headless chromium (installed by deploy/test-setup.sh), driven by
Playwright, against the bundled site under gunicorn and a Celery worker, both
on the real Redis. The page's JavaScript is the thing under test: blueimp
jQuery-File-Upload sending chunks, spark-md5 in the browser, resuming from
localStorage after a reload.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
import requests

from tests.support.processes import (
    REPO,
    SiteProcess,
    WorkerProcess,
    completed_signals,
    live_env,
    require_real_redis,
    wait_for,
)

pytestmark = [pytest.mark.live, pytest.mark.browser]

CHROMIUM = os.environ.get("CHUNKY_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO / "test-artifacts"
CHUNK = 256 << 10
MAX_BYTES = 8 << 20
UPLOAD_URL = re.compile(r"/upload/(?:[0-9a-f]{32}/)?(?:\?.*)?$")
ID_IN_URL = re.compile(r"/upload/([0-9a-f]{32})/")


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: deploy/test-setup.sh (make test) installs Debian's chromium"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    require_real_redis()
    env = live_env(tmp_path_factory.mktemp("browser"), CHUNKY_MAX_BYTES=str(MAX_BYTES))
    with SiteProcess(env, workers=2) as site, WorkerProcess(env):
        yield site, env
    # (tests/conftest.py deletes the keys of every live_env() at the end of the session)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 820}, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.errors = errors
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def make_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


def stored_md5(env: dict, site: SiteProcess, upload_id: str) -> tuple[dict, str]:
    status = requests.get(f"{site.url}/upload/{upload_id}/", timeout=10).json()
    assert status["status"] == "complete", status
    final = Path(env["MEDIA_ROOT"]) / status["final_name"]
    return status, hashlib.md5(final.read_bytes()).hexdigest()


def row(page, name: str, state: str | None = None):
    selector = f'li.file[data-name="{name}"]'
    return page.locator(selector + (f'[data-state="{state}"]' if state else ""))


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_upload_survives_a_dropped_connection_and_a_reload(live, page, tmp_path):
    site, env = live
    name = "Résumé scan (2024).bin"
    local = tmp_path / name
    size = 3 * (1 << 20) + 12_345  # 13 chunks of 256 KiB
    md5 = make_file(local, size)
    accepted = 4

    # The network goes down for good at the fifth chunk: that request and every later PUT fail.
    puts = {"count": 0, "down": False}

    def network(route, request):
        if request.method == "PUT":
            puts["count"] += 1
            if puts["count"] > accepted:
                puts["down"] = True
                return route.abort("connectionreset")
        return route.continue_()

    page.route(UPLOAD_URL, network)
    page.goto(f"{site.url}/?chunk=256k")
    assert page.locator("#chunky").get_attribute("data-chunk-size") == str(CHUNK)
    page.set_input_files("#fileupload", str(local))

    # The page notices, says so, and keeps retrying (against a server it cannot reach).
    row(page, name, "retrying").wait_for(timeout=20_000)
    assert "connection was lost" in row(page, name).locator(".file-message").inner_text()
    upload_id = row(page, name).get_attribute("data-upload-id")
    assert upload_id and re.fullmatch(r"[0-9a-f]{32}", upload_id)
    server = requests.get(f"{site.url}/upload/{upload_id}/", timeout=10).json()
    assert server["status"] == "uploading"
    assert server["offset"] == accepted * CHUNK

    # Reload: the page remembers the unfinished upload and shows where it stopped.
    page.unroute(UPLOAD_URL)
    page.reload()
    paused = row(page, name, "paused")
    paused.wait_for(timeout=10_000)
    page.wait_for_function(
        "() => document.querySelector('li.file .file-message').textContent.includes('Interrupted')",
    )
    resumed_at = f"{100 * accepted * CHUNK // size}%"
    assert f"Interrupted at {resumed_at}" in paused.inner_text()

    # Choosing the same file resumes from the server's offset: no new upload, no byte sent twice.
    sent: list[tuple[str, str | None]] = []
    page.on(
        "request",
        lambda r: r.method == "PUT" and sent.append((r.url, r.headers.get("content-range"))),
    )
    page.set_input_files("#fileupload", str(local))
    done = row(page, name, "complete")
    done.wait_for(timeout=60_000)

    assert sent, "nothing was sent after the reload"
    assert [ID_IN_URL.search(url).group(1) for url, _ in sent] == [upload_id] * len(sent)
    starts = [int(re.match(r"bytes (\d+)-(\d+)/(\d+)$", header).group(1)) for _, header in sent]
    assert starts == list(range(accepted * CHUNK, size, CHUNK))

    status, final_md5 = stored_md5(env, site, upload_id)
    assert final_md5 == md5
    assert status["size"] == size
    assert status["filename"] == name
    text = done.inner_text()
    assert status["final_name"] in text
    assert "3.01 MiB" in text and f"{size:,} bytes" in text
    assert md5 in text  # the md5 the browser computed, from the re-read prefix and the new chunks
    assert f"resumed at {resumed_at}" in text
    assert page.evaluate("localStorage.getItem('chunky-redis.uploads.v1')") == "{}"
    screenshot(page, "browser-resumed-upload.png")


def test_several_files_conflict_expired_and_too_large(live, page, tmp_path):
    site, env = live
    files = {
        "notes.txt": 100_000,  # smaller than a chunk: one request without Content-Range
        "photos.zip": (1 << 20) + 7,  # five chunks; the second meets a 409 once
        "old.log": 600_000,  # three chunks; the second is answered 410 Gone
        "disk image.iso": MAX_BYTES + 1,  # refused before anything is sent
    }
    md5s = {name: make_file(tmp_path / name, size) for name, size in files.items()}
    answered: dict[str, list[str]] = {"photos.zip": [], "old.log": []}

    def network(route, request):
        disposition = request.headers.get("content-disposition", "")
        if request.method == "PUT" and ID_IN_URL.search(request.url):
            if "photos.zip" in disposition and not answered["photos.zip"]:
                # As when another request holds the upload's lock.
                answered["photos.zip"].append(request.url)
                return route.fulfill(
                    status=409,
                    headers={"Retry-After": "1", "Cache-Control": "no-store"},
                    json={"detail": "Another request is writing to this upload.", "code": "locked"},
                )
            if "old.log" in disposition:
                answered["old.log"].append(request.url)
                gone = {"detail": "The upload has expired.", "code": "expired"}
                return route.fulfill(status=410, json=gone)
        return route.continue_()

    page.route(UPLOAD_URL, network)
    page.goto(f"{site.url}/?chunk=256k")
    page.set_input_files("#fileupload", [str(tmp_path / name) for name in files])

    # The retrying state lasts only the 1 s Retry-After: match state and message in one wait
    # (reading the message after the wait raced the retry on a loaded machine).
    row(page, "photos.zip", "retrying").filter(has_text="Conflict").wait_for(timeout=20_000)
    too_large = row(page, "disk image.iso", "error")
    too_large.wait_for(timeout=5_000)
    limit = "the file is 8,388,609 bytes, over the limit of 8,388,608 bytes."
    assert f"Too large: {limit}" in too_large.inner_text()
    expired = row(page, "old.log", "error")
    expired.wait_for(timeout=20_000)
    assert "Expired" in expired.inner_text()
    assert len(answered["old.log"]) == 1  # a 410 is final: no retry
    for failed in (too_large, expired):
        assert failed.locator(".btn-retry").is_hidden()

    for name in ("notes.txt", "photos.zip"):
        done = row(page, name, "complete")
        done.wait_for(timeout=60_000)
        status, final_md5 = stored_md5(env, site, done.get_attribute("data-upload-id"))
        assert final_md5 == md5s[name]
        assert status["filename"] == name
        assert status["final_name"] in done.inner_text()
    assert len(answered["photos.zip"]) == 1
    assert page.locator("#overall-text").inner_text() == "2 complete · 2 failed"
    screenshot(page, "browser-several-files.png")


def assert_completed_once(env, upload_id):
    """The worker marks an upload complete before it sends the signal: wait, then count."""
    wait_for(lambda: completed_signals(env, upload_id), message="upload_completed")
    assert len(completed_signals(env, upload_id)) == 1


# -- a page written for django-chunked-upload, against the chunked/ dialect ------------------

CHUNKED_UPLOAD_URL = re.compile(r"/chunked/upload/$")


def test_a_django_chunked_upload_page_resumes_after_a_lost_answer_and_a_reload(
    live, page, tmp_path
):
    """The page posts upload_id in its formData and completes with spark-md5's checksum, as
    django-chunked-upload's demo does; it resumes from the offset the protocol gives it."""
    site, env = live
    name = "holiday video.mp4"
    local = tmp_path / name
    size = 5 * CHUNK + 4_321  # six chunks of 256 KiB
    md5 = make_file(local, size)
    stored_before_the_cut = 4

    # Three chunks go through; the fourth reaches the server, which stores it, but its
    # answer is lost; then the network is down.
    posts = {"count": 0}

    def network(route, request):
        posts["count"] += 1
        if posts["count"] < stored_before_the_cut:
            return route.continue_()
        if posts["count"] == stored_before_the_cut:
            route.fetch()  # the server gets the chunk and answers; the page never sees it
        return route.abort("connectionreset")

    page.route(CHUNKED_UPLOAD_URL, network)
    page.goto(f"{site.url}/demo/chunked-upload/?chunk=256k")
    assert page.locator("#chunked-demo").get_attribute("data-chunk-size") == str(CHUNK)
    page.set_input_files("#chunked_upload", str(local))

    transfer = page.locator("#transfer")
    page.locator('#transfer[data-state="interrupted"]').wait_for(timeout=20_000)
    assert f"Interrupted at byte {3 * CHUNK} of {size}" in transfer.inner_text()
    assert page.locator("#resume").is_visible()
    upload_id = transfer.get_attribute("data-upload-id")
    assert upload_id and re.fullmatch(r"[0-9a-f]{32}", upload_id)
    server = requests.get(f"{site.url}/upload/{upload_id}/", timeout=10).json()
    assert (server["status"], server["offset"]) == ("uploading", stored_before_the_cut * CHUNK)

    # Reload and choose the file again: the page sends from the offset it remembered (one
    # chunk short), the server refuses it with its own offset, the page goes on from there.
    page.unroute(CHUNKED_UPLOAD_URL)
    page.reload()
    sent: list[str | None] = []
    page.on(
        "request",
        lambda r: (
            r.method == "POST"
            and r.url.endswith("/chunked/upload/")
            and sent.append(r.headers.get("content-range"))
        ),
    )
    answers: list[int] = []
    page.on(
        "response",
        lambda r: (
            r.request.method == "POST"
            and r.url.endswith("/chunked/upload/")
            and answers.append(r.status)
        ),
    )
    page.set_input_files("#chunked_upload", str(local))
    done = page.locator('#transfer[data-state="complete"]')
    done.wait_for(timeout=60_000)

    starts = [int(re.match(r"bytes (\d+)-", header).group(1)) for header in sent]
    assert starts == [3 * CHUNK, 4 * CHUNK, 5 * CHUNK]
    text = done.inner_text()
    # The two accepted chunks' answers, shown as the page got them: the same upload.
    assert text.count(f'"upload_id":"{upload_id}"') == 3  # two chunks and the completion
    assert f"You successfully uploaded '{name}' ({size} bytes)!" in text
    assert answers == [400, 200, 200]  # the stale chunk refused with the server's offset
    assert done.get_attribute("data-md5") == md5

    status, final_md5 = stored_md5(env, site, upload_id)
    assert final_md5 == md5
    assert (status["size"], status["filename"]) == (size, name)
    assert_completed_once(env, upload_id)
    assert page.evaluate("localStorage.getItem('chunked-upload-demo.v1')") == "{}"
    screenshot(page, "browser-chunked-upload-page.png")


# -- Uppy (@uppy/core, @uppy/dashboard, @uppy/tus) against the tus endpoint -------------------

TUS_URL = re.compile(r"/files/")


def test_the_uppy_page_resumes_over_tus_after_a_lost_answer(live, page, tmp_path):
    site, env = live
    name = "scan.tiff"
    local = tmp_path / name
    size = 5 * CHUNK + 999  # six PATCH requests of 256 KiB
    md5 = make_file(local, size)
    stored_before_the_cut = 4

    # Three PATCHes go through; the fourth reaches the server but its answer is lost; then
    # the network is down until the test restores it (tus-js-client's retries fail too).
    patches = {"count": 0}

    def network(route, request):
        if request.method != "PATCH":
            return route.continue_()
        patches["count"] += 1
        if patches["count"] < stored_before_the_cut:
            return route.continue_()
        if patches["count"] == stored_before_the_cut:
            route.fetch()
        return route.abort("connectionreset")

    page.route(TUS_URL, network)
    page.goto(f"{site.url}/demo/uppy/?chunk=256k")
    assert page.locator("#uppy-demo").get_attribute("data-chunk-size") == str(CHUNK)
    page.locator(".uppy-Dashboard-input").first.set_input_files(str(local))

    state = page.locator("#uppy-state")
    page.locator('#uppy-state[data-state="interrupted"]').wait_for(timeout=30_000)
    assert "Interrupted" in state.inner_text()

    # Retry: tus asks the server for its offset (HEAD) and sends only what is missing.
    page.unroute(TUS_URL)
    sent: list[tuple[str, str | None]] = []
    page.on(
        "request",
        lambda r: (
            TUS_URL.search(r.url)
            and r.method in ("HEAD", "PATCH")
            and sent.append((r.method, r.headers.get("upload-offset")))
        ),
    )
    page.locator("button.uppy-StatusBar-actionBtn--retry").click()
    page.locator('#uppy-state[data-state="complete"]').wait_for(timeout=60_000)

    offsets = [int(offset) for method, offset in sent if method == "PATCH"]
    assert sent[0] == ("HEAD", None)
    assert offsets == [stored_before_the_cut * CHUNK, 5 * CHUNK]
    upload_url = page.locator("#uppy-demo").get_attribute("data-upload-url")
    upload_id = re.search(r"/files/([0-9a-f]{32})$", upload_url).group(1)
    assert f"Complete: {name} ({size} bytes)" in state.inner_text()

    def finished():
        reply = requests.get(f"{site.url}/upload/{upload_id}/", timeout=10).json()
        return reply["status"] == "complete"

    wait_for(finished, timeout=30, message="the worker to finalize the tus upload")
    status, final_md5 = stored_md5(env, site, upload_id)
    assert final_md5 == md5
    assert (status["size"], status["filename"]) == (size, name)
    assert_completed_once(env, upload_id)
    screenshot(page, "browser-uppy-page.png")
