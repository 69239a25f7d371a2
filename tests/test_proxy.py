"""The bundled site behind the sample nginx, both real processes on free ports.

status_url points back through the proxy (host and port as the client used
them); headers a client forges are replaced by nginx; and a finished page.html
comes back as a download from nginx's /media/ and from the site's own.
nginx is installed by deploy/test-setup.sh: without it this test fails.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess

import pytest
import requests

from tests.support.api import multipart
from tests.support.processes import SiteProcess, free_port, live_env, wait_for
from tests.test_deploy_files import NGINX_CONF

pytestmark = [pytest.mark.live, pytest.mark.slow]

PAGE = b"<html><script>alert(document.cookie)</script></html>"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    assert found, "nginx is not installed: run deploy/test-setup.sh"
    return found


class Nginx:
    """The sample config, pointed at a local upstream and media directory."""

    def __init__(self, tmp_path, upstream_port: int, media_root):
        self.dir = tmp_path / "nginx"
        self.dir.mkdir()
        self.port = free_port()
        site = NGINX_CONF.read_text()
        site = re.sub(r"(\bserver\s+)web:8000;", rf"\g<1>127.0.0.1:{upstream_port};", site)
        site = re.sub(r"\blisten\s+80;", f"listen 127.0.0.1:{self.port};", site)
        site = site.replace("alias /data/media/;", f"alias {media_root}/;")
        assert f"127.0.0.1:{self.port}" in site and str(media_root) in site
        (self.dir / "site.conf").write_text(site)
        temp = "".join(
            f"  {kind}_temp_path {self.dir}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        user = "user root;\n" if os.geteuid() == 0 else ""  # to read the test's private tmp dir
        (self.dir / "nginx.conf").write_text(
            f"{user}pid {self.dir}/nginx.pid;\nerror_log {self.dir}/error.log;\n"
            f"events {{}}\nhttp {{\n  access_log off;\n{temp}  include {self.dir}/site.conf;\n}}\n"
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Nginx:
        args = [nginx_binary(), "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")]
        args += ["-e", str(self.dir / "error.log"), "-g", "daemon off;"]
        self.proc = subprocess.Popen(args, start_new_session=True, stderr=subprocess.PIPE)

        def up() -> bool:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            try:
                return requests.get(self.url + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, timeout=30, message="nginx")
        return self

    def __exit__(self, *exc_info) -> None:
        os.killpg(self.proc.pid, signal.SIGQUIT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("proxy")
    env = live_env(
        tmp_path,
        CELERY_TASK_ALWAYS_EAGER="1",  # finalization in the web process: no worker needed
        CHUNKY_ALLOW_ANONYMOUS="1",
        USE_X_FORWARDED_HOST="1",
        USE_X_FORWARDED_PORT="1",
        SECURE_PROXY_SSL_HEADER="1",
    )
    with (
        SiteProcess(env, workers=1, threads=4) as site,
        Nginx(tmp_path, site.port, tmp_path / "media") as nginx,
    ):
        yield site, nginx


def upload_page(base_url: str, **headers) -> dict:
    body, ctype = multipart(
        PAGE, part_name="page.html", fields={"md5": hashlib.md5(PAGE).hexdigest()}
    )
    reply = requests.post(
        base_url + "/upload/", data=body, headers={"Content-Type": ctype, **headers}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def assert_download(response: requests.Response) -> None:
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment")
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"].startswith("sandbox")


def test_status_url_points_back_through_the_proxy(stack):
    _site, nginx = stack
    # Whatever a client claims in X-Forwarded-*, nginx replaces it with what it saw.
    forged = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}
    done = upload_page(nginx.url, **forged)
    assert done["status_url"] == f"{nginx.url}/upload/{done['upload_id']}/"
    status = requests.get(done["status_url"], timeout=10)
    assert status.status_code == 200 and status.json()["status"] in ("processing", "complete")
    head = requests.head(done["status_url"], timeout=10)
    assert head.status_code == 200 and head.content == b""


def test_the_site_trusts_forwarded_headers_when_told(stack):
    site, _nginx = stack
    forwarded = {"X-Forwarded-Host": "uploads.example:8443", "X-Forwarded-Proto": "https"}
    done = upload_page(site.url, **forwarded)
    assert done["status_url"] == f"https://uploads.example:8443/upload/{done['upload_id']}/"


def test_a_finished_page_is_a_download_from_nginx_and_from_the_site(stack):
    site, nginx = stack
    done = upload_page(nginx.url)

    def final_url():
        status = requests.get(done["status_url"], timeout=10).json()
        return status.get("final_url")

    path = wait_for(final_url, timeout=30, message="the upload to complete")
    assert path.endswith("/page.html")
    for base in (nginx.url, site.url):
        response = requests.get(base + path, timeout=10)
        assert_download(response)
        assert response.content == PAGE
