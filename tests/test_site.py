"""The bundled site's own endpoints: /healthz, and the finished files at MEDIA_URL.

/healthz names what failed, never a host, port or path, and fails on a full or
unwritable upload disk (tried on a tiny tmpfs mounted here). Finished files are
always downloads that a browser neither renders nor sniffs (no stored XSS).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, RequestFactory

from tests.support.api import ClientApi, multipart
from tests.support.processes import free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from chunky_site import views as site_views  # noqa: E402

pytestmark = pytest.mark.django_db


@pytest.fixture
def site(chunky):
    """The bundled site's URLs over the test settings."""
    chunky.ROOT_URLCONF = "chunky_site.urls"
    chunky.MEDIA_URL = "/media/"  # as the bundled site sets it (the test settings leave it unset)
    chunky.CHUNKY_HEALTH_MIN_FREE_BYTES = 0
    return chunky


def health(client: Client | None = None):
    reply = (client or Client()).get("/healthz")
    return reply.status_code, reply.json()


@contextlib.contextmanager
def tmpfs(path: Path, *options: str):
    """A 1 MiB tmpfs of our own at ``path``; unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (make test runs as root in CI)")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(["size=1m", *options]), "tmpfs", str(path)],
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


# -- /healthz ----------------------------------------------------------------------------------
def test_healthz_is_ok(site):
    assert health() == (200, {"status": "ok", "problems": {}})


@contextlib.contextmanager
def unreachable_redis(settings):
    """Redis at a port where nothing listens; the test's own Redis again afterwards."""
    port, saved = free_port(), settings.CHUNKY_REDIS_REDIS_URL
    settings.CHUNKY_REDIS_REDIS_URL = f"redis://127.0.0.1:{port}/0"
    try:
        yield port
    finally:
        settings.CHUNKY_REDIS_REDIS_URL = saved


def test_healthz_does_not_name_the_redis_host_and_port(site, caplog):
    with unreachable_redis(site) as port, caplog.at_level(logging.WARNING, logger="chunky_site"):
        status, body = health()
    assert status == 503
    assert body["problems"] == {"redis": "unavailable"}
    assert str(port) not in str(body) and "127.0.0.1" not in str(body)
    assert str(port) in caplog.text, "the operator finds the detail in the log"


@pytest.mark.fault  # mounts a tmpfs and fills it
def test_healthz_fails_on_a_full_upload_disk(site, tmp_path, caplog):
    with tmpfs(tmp_path / "small") as disk:
        site.CHUNKY_REDIS_UPLOAD_DIR = str(disk / "chunks")
        assert health()[0] == 200
        with contextlib.suppress(OSError), open(disk / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        with caplog.at_level(logging.WARNING, logger="chunky_site"):
            status, body = health()
        assert (status, body["problems"]) == (503, {"upload_dir": "full"})
        assert str(disk) not in str(body) and str(disk) in caplog.text
        (disk / "filler").unlink()
        assert health()[0] == 200


@pytest.mark.fault  # mounts a read-only tmpfs
def test_healthz_fails_on_a_read_only_upload_disk(site, tmp_path):
    with tmpfs(tmp_path / "ro", "ro") as disk:
        site.CHUNKY_REDIS_UPLOAD_DIR = str(disk)
        status, body = health()
    assert (status, body["problems"]) == (503, {"upload_dir": "not writable"})


def test_healthz_fails_below_the_free_space_threshold(site):
    site.CHUNKY_HEALTH_MIN_FREE_BYTES = 1 << 62
    assert health() == (503, {"status": "unhealthy", "problems": {"upload_dir": "full"}})


def test_a_503_does_not_name_the_redis_host_and_port(chunky, caplog):
    with unreachable_redis(chunky) as port, caplog.at_level(logging.WARNING, logger="chunky_redis"):
        reply = ClientApi().put("/upload/", b"abc")
    assert reply.status == 503 and reply.data["code"] == "store_unavailable"
    assert str(port) not in reply.body.decode() and "127.0.0.1" not in reply.body.decode()
    assert str(port) in caplog.text


def test_errors_outside_the_upload_views_are_json(site, monkeypatch):
    response = Client().get("/no/such/page")
    assert response.status_code == 404 and response.json()["code"] == "not_found"

    def broken(request):
        raise RuntimeError("a bug")

    monkeypatch.setattr(site_views, "upload_dir_problem", broken)
    response = Client(raise_request_exception=False).get("/healthz")
    assert response.status_code == 500 and response.json()["code"] == "server_error"


# -- finished files ----------------------------------------------------------------------------
PAGE = b"<html><script>alert(document.cookie)</script></html>"


def assert_download(response, filename: str) -> None:
    assert response["Content-Disposition"].startswith("attachment")
    assert f'filename="{filename}"' in response["Content-Disposition"]
    assert response["Content-Type"] == "application/octet-stream"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"].startswith("sandbox")


def test_an_uploaded_page_is_served_as_a_download(site):
    """The demo's final_url works, and an upload named page.html cannot run on this origin."""
    body, ctype = multipart(
        PAGE, part_name="page.html", fields={"md5": hashlib.md5(PAGE).hexdigest()}
    )
    reply = ClientApi().request("POST", "/upload/", body, ctype)
    assert reply.status == 200, reply.body
    status = ClientApi().get(f"/upload/{reply.data['upload_id']}/").data
    assert status["status"] == "complete", status  # eager finalization in the tests
    response = Client().get(status["final_url"])
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PAGE
    assert_download(response, "page.html")
    head = Client().head(status["final_url"])
    assert head.status_code == 200 and head["Content-Disposition"].startswith("attachment")


def test_media_never_leaves_media_root(site, tmp_path):
    (tmp_path / "secret.txt").write_bytes(b"secret")
    for path in ("/media/../secret.txt", "/media/%2e%2e/secret.txt", "/media/nothing/here"):
        response = Client().get(path)
        assert response.status_code == 404, path
        assert response.json()["code"] == "not_found"
    assert Client().post("/media/x").status_code == 405


def test_the_media_view_names_non_ascii_files(site):
    media = Path(site.MEDIA_ROOT) / "d"
    media.mkdir(parents=True)
    (media / "r\u00e9sum\u00e9.svg").write_bytes(b"<svg onload=alert(1)/>")
    request = RequestFactory().get("/media/d/r%C3%A9sum%C3%A9.svg")
    response = site_views.media(request, "d/r\u00e9sum\u00e9.svg")
    assert response["Content-Type"] == "application/octet-stream"
    assert "filename*=utf-8''r%C3%A9sum%C3%A9.svg" in response["Content-Disposition"]
    response.close()


@pytest.fixture
def cors_site(site, settings):
    """The bundled site's CORS configuration, with any origin allowed."""
    from chunky_site import settings as site_settings

    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "corsheaders"]
    settings.MIDDLEWARE = ["corsheaders.middleware.CorsMiddleware", *settings.MIDDLEWARE]
    settings.CORS_ALLOW_ALL_ORIGINS = True
    for name in ("CORS_ALLOW_HEADERS", "CORS_EXPOSE_HEADERS", "CORS_ALLOW_METHODS"):
        setattr(settings, name, getattr(site_settings, name))
    assert "corsheaders.middleware.CorsMiddleware" == site_settings.MIDDLEWARE[0]
    return site


def test_tus_from_a_page_on_another_origin(cors_site):
    origin = {"HTTP_ORIGIN": "https://app.example"}
    client = Client()
    preflight = client.options(
        "/files/",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="PATCH",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS=(
            "tus-resumable,upload-offset,upload-length,upload-metadata,upload-checksum,"
            "upload-defer-length,x-http-method-override,content-type"
        ),
        **origin,
    )
    assert preflight.status_code == 200
    assert "PATCH" in preflight["Access-Control-Allow-Methods"]
    allowed = preflight["Access-Control-Allow-Headers"].lower()
    for header in ("tus-resumable", "upload-offset", "upload-checksum", "x-http-method-override"):
        assert header in allowed
    created = client.post(
        "/files/",
        b"",
        content_type="",
        HTTP_TUS_RESUMABLE="1.0.0",
        HTTP_UPLOAD_LENGTH="3",
        **origin,
    )
    assert created.status_code == 201
    assert created["Access-Control-Allow-Origin"] == "*"
    exposed = created["Access-Control-Expose-Headers"].lower()
    for header in ("location", "upload-offset", "upload-length", "tus-resumable", "upload-expires"):
        assert header in exposed
