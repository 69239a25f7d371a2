"""The sample nginx (deploy/nginx/chunky_redis.conf) in front of a chunky_redis server.

The sample's server block is used as it is shipped, with only the upstream address, the listen
port and ``proxy_request_buffering`` replaced, inside a minimal main config whose pid, logs and
temporary files live in the run's directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .servers import REPO, Server, free_port

SAMPLE = REPO / "deploy" / "nginx" / "chunky_redis.conf"


def nginx_config(work: Path, port: int, backend_port: int, buffering: bool) -> str:
    block = SAMPLE.read_text()
    block = block.replace("server web:8000;", f"server 127.0.0.1:{backend_port};")
    block = re.sub(r"listen 80;", f"listen 127.0.0.1:{port};", block)
    block = re.sub(
        r"^(\s*)proxy_request_buffering \w+;",
        rf"\1proxy_request_buffering {'on' if buffering else 'off'};",
        block,
        flags=re.M,
    )
    block = block.replace("alias /data/media/;", f"alias {work}/media/;")
    temp = "\n".join(
        f"    {name}_temp_path {work}/{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}daemon off;\nworker_processes 2;\npid {work}/nginx.pid;\n"
        f"error_log {work}/error.log warn;\n"
        "events { worker_connections 8192; }\n"
        f"http {{\n    access_log off;\n{temp}\n{block}\n}}\n"
    )


@dataclass
class Fronted(Server):
    """nginx as ``proc``; the app server it proxies to as ``backend`` (started and stopped with it)."""

    backend: Server | None = None

    def start(self, logs: Path) -> None:
        assert self.backend is not None
        self.backend.start(logs)
        super().start(logs)

    def wait_healthy(self, timeout: float = 60) -> None:
        assert self.backend is not None
        self.backend.wait_healthy(timeout)
        super().wait_healthy(timeout)

    def wipe(self) -> None:
        assert self.backend is not None
        self.backend.wipe()

    def stop(self) -> None:
        super().stop()
        assert self.backend is not None
        self.backend.stop()


def front(backend: Server, work: Path, *, buffering: bool) -> Fronted:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = work / f"nginx-{backend.name}"
    d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(nginx_config(d, port, backend.port, buffering))
    subprocess.run([nginx, "-t", "-q", "-c", str(conf), "-p", str(d)], check=True)
    mode = "buffering on" if buffering else "streaming"
    return Fronted(
        f"{backend.name}-nginx",
        f"{backend.label} behind the sample nginx ({mode})",
        backend.kind,
        [nginx, "-c", str(conf), "-p", str(d)],
        dict(os.environ),
        backend.protocol_factory,
        backend.data_dirs,
        port=port,
        multipart=backend.multipart,
        backend=backend,
    )
