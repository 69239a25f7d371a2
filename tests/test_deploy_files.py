"""The deployment files say what the service needs, and agree with the code that runs.

docker-compose.yml and the Kubernetes manifests are parsed and checked for what
scaling out depends on: the services, one shared upload volume in web and worker,
exactly one beat, a ReadWriteMany claim, probes on /healthz, and environment
variables that deploy/chunky_site/settings.py (or gunicorn.conf.py) really reads.
The nginx sample must match gunicorn's worker model, and `nginx -t` must accept it
(deploy/test-setup.sh installs nginx; without it the test fails).
"""

from __future__ import annotations

import ast
import os
import platform
import re
import resource
import runpy
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
NGINX_CONF = DEPLOY / "nginx" / "chunky_redis.conf"

# What every process of the service must be given (the brief of the deployment issue).
REQUIRED_ENV = {
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CHUNKY_UPLOAD_DIR",
    "MEDIA_ROOT",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DEBUG",
}
ROLES = ("web", "worker", "beat")


# -- what the code reads --------------------------------------------------------------------------
def env_names_read_by(path: Path) -> set[str]:
    """Names a module passes to os.environ.get, os.environ[...], os.getenv or env_*() helpers."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            is_environ_get = (
                isinstance(func, ast.Attribute)
                and func.attr == "get"
                and ast.unparse(func.value) == "os.environ"
            )
            is_helper = ast.unparse(func) == "os.getenv" or (
                isinstance(func, ast.Name) and func.id.startswith("env_")
            )
            if is_environ_get or is_helper:
                names.add(node.args[0].value)
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant):
                names.add(node.slice.value)
    return names


# The settings, and the Celery app (beat's heartbeat file).
SETTINGS_ENV = env_names_read_by(DEPLOY / "chunky_site" / "settings.py") | env_names_read_by(
    REPO / "tasks" / "celery.py"
)
GUNICORN_ENV = env_names_read_by(DEPLOY / "gunicorn.conf.py")


def gunicorn_config() -> dict:
    """deploy/gunicorn.conf.py's values as the images run it (no GUNICORN_* overrides)."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("GUNICORN_")}
    try:
        namespace: dict = {"__file__": str(DEPLOY / "gunicorn.conf.py")}
        exec(
            compile((DEPLOY / "gunicorn.conf.py").read_text(), "gunicorn.conf.py", "exec"),
            namespace,
        )
        return namespace
    finally:
        os.environ.update(saved)


def test_settings_read_the_required_environment():
    assert REQUIRED_ENV <= SETTINGS_ENV, REQUIRED_ENV - SETTINGS_ENV
    assert {"HOST", "PORT", "WEB_CONCURRENCY"} <= GUNICORN_ENV


def test_a_worker_keeps_what_it_loaded_out_of_the_collector() -> None:
    import gc

    gc.unfreeze()
    try:
        gunicorn_config()["post_worker_init"](None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.mark.live
def test_gunicorns_master_loads_no_application_module_to_find_the_worker_class():
    """The master imports the worker class's module; each worker monkey-patches only after it
    forks. A module the master imported first keeps unpatched sockets and ssl in the workers (gevent
    warned of it at every start while the class lived in chunky_site, whose package loads Celery)."""
    worker_class = gunicorn_config()["worker_class"]
    module = worker_class.rpartition(".")[0]
    check = (
        f"import sys, {module}; "
        "print(sorted(m for m in ('django', 'celery', 'kombu', 'redis', 'botocore', 'urllib3', "
        "'chunky_redis', 'chunky_site', 'tasks') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(DEPLOY), str(REPO)]))
    out = subprocess.run(
        [sys.executable, "-c", check], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _page_faults_reading_a_body(size: int) -> int:
    """Minor page faults of this process while gunicorn's body reader takes ``size`` bytes off a
    socket in 1 MiB blocks, as a chunk request's are read (a thread feeds the other end)."""
    from gunicorn.http.body import Body, LengthReader
    from gunicorn.http.unreader import SocketUnreader

    ours, theirs = socket.socketpair()
    block = os.urandom(1 << 20)
    feeder = threading.Thread(target=lambda: [theirs.sendall(block) for _ in range(size >> 20)])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    feeder.start()
    body, received = Body(LengthReader(SocketUnreader(ours), size)), 0
    while received < size:
        received += len(body.read(1 << 20))
    feeder.join()
    ours.close(), theirs.close()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_gunicorn_config_keeps_freed_blocks_off_fresh_pages():
    """glibc's default trimming put every block of a chunk on fresh pages (some 2,500 faults per
    8 MiB); the config's mallopt keeps them on reused heap (some 30)."""
    gunicorn_config()
    _page_faults_reading_a_body(8 << 20)  # the heap grows once
    assert _page_faults_reading_a_body(64 << 20) < 8 * 500


# -- docker-compose.yml ---------------------------------------------------------------------------
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def interpolate(value):
    """What Compose makes of ${VAR:-default} in an empty environment (${VAR:?...} gives x)."""
    if not isinstance(value, str):
        return value
    return _INTERPOLATION.sub(lambda m: m.group(3) if m.group(2) == "-" else "x", value).replace(
        "$$", "$"
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def compose_env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: interpolate(value) for name, value in env.items()}


def named_volume_mounts(compose: dict, service: dict) -> dict[str, str]:
    """target -> named volume, for the named volumes a service mounts."""
    mounts = {}
    for spec in service.get("volumes", []):
        source, target = (
            (spec.split(":")[:2]) if isinstance(spec, str) else (spec["source"], spec["target"])
        )
        if source in compose.get("volumes", {}):
            mounts[target] = source
    return mounts


def volume_holding(mounts: dict[str, str], directory: str) -> str | None:
    for target, volume in mounts.items():
        if PurePosixPath(directory).is_relative_to(target):
            return volume
    return None


def test_compose_has_the_services(compose):
    services = compose["services"]
    assert {"web", "worker", "beat", "redis"} <= set(services)
    images = {services[role]["image"] for role in ROLES}
    assert len(images) == 1, "web, worker and beat run one image"
    build = services["web"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert (
        "gunicorn" in services["web"]["command"]
        and "deploy/gunicorn.conf.py" in services["web"]["command"]
    )
    assert services["worker"]["command"][:4] == ["celery", "-A", "tasks", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "tasks", "beat"]


def test_compose_configures_everything_from_settings_names(compose):
    for role in ROLES:
        env = compose_env(compose["services"][role])
        assert REQUIRED_ENV <= set(env), (role, REQUIRED_ENV - set(env))
        unknown = set(env) - SETTINGS_ENV - GUNICORN_ENV
        assert not unknown, f"{role} sets variables nothing reads: {unknown}"
        assert env["DEBUG"] in ("0", "false", "False", "")
        broker = env["CELERY_BROKER_URL"]
        assert env["REDIS_URL"].startswith("redis://redis:") and broker.startswith("redis://redis:")


def test_compose_shares_one_upload_volume_between_web_and_worker(compose):
    services = compose["services"]
    volumes = {}
    for role in ("web", "worker"):
        env = compose_env(services[role])
        mounts = named_volume_mounts(compose, services[role])
        volumes[role] = volume_holding(mounts, env["CHUNKY_UPLOAD_DIR"])
        assert volumes[role], (
            f"{role}: CHUNKY_UPLOAD_DIR {env['CHUNKY_UPLOAD_DIR']} is on no named volume"
        )
        # Final files on the same mount: the hand-off is a rename (two mounts would make it fail).
        assert volume_holding(mounts, env["MEDIA_ROOT"]) == volumes[role]
    assert volumes["web"] == volumes["worker"]
    assert (
        compose_env(services["web"])["CHUNKY_UPLOAD_DIR"]
        == compose_env(services["worker"])["CHUNKY_UPLOAD_DIR"]
    )


def test_compose_runs_exactly_one_beat_and_scales_the_rest(compose):
    services = compose["services"]
    assert int(interpolate(services["beat"]["deploy"]["replicas"])) == 1
    for role in ("web", "worker"):
        assert int(interpolate(services[role]["deploy"]["replicas"])) >= 2
        assert "container_name" not in services[role], "a fixed container name prevents --scale"
        assert "ports" not in services[role], (
            "a published host port prevents --scale; nginx is in front"
        )


def test_compose_health_checks_call_healthz(compose):
    web = compose["services"]["web"]
    test = " ".join(web["healthcheck"]["test"])
    assert "/healthz" in test and "127.0.0.1" in test
    # The check's Host header is 127.0.0.1; Django refuses hosts that are not allowed.
    assert "127.0.0.1" in compose_env(web)["ALLOWED_HOSTS"].split(",")
    assert compose_env(web)["HOST"] == "0.0.0.0", (
        "gunicorn must listen beyond the container's loopback"
    )
    assert compose["services"]["redis"]["healthcheck"]
    assert compose["services"]["web"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_redis_never_evicts(compose):
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_compose_nginx_uses_the_sample_config(compose):
    nginx = compose["services"]["nginx"]
    sources = [spec.split(":")[0] for spec in nginx["volumes"]]
    assert (DEPLOY / sources[0]).resolve() == NGINX_CONF
    assert re.search(r"server\s+web:8000;", NGINX_CONF.read_text())


def enabled(value: str) -> bool:
    """How deploy/chunky_site/settings.py's env_bool reads a variable."""
    return value.strip().lower() in ("1", "true", "yes", "on")


def test_compose_refuses_anonymous_uploads_unless_told(compose):
    assert "CHUNKY_ALLOW_ANONYMOUS" in SETTINGS_ENV, "a variable turns anonymous uploads on"
    for role in ROLES:
        env = compose_env(compose["services"][role])
        assert not enabled(env["CHUNKY_ALLOW_ANONYMOUS"]), f"{role}: anonymous uploads are on"
    raw = compose["x-environment"]["CHUNKY_ALLOW_ANONYMOUS"]
    assert "${CHUNKY_ALLOW_ANONYMOUS" in raw, "the environment (deploy/.env) can turn them on"


def test_compose_trusts_the_forwarded_headers_of_its_nginx(compose):
    assert "ports" not in compose["services"]["web"], "web is reached only through nginx"
    env = compose_env(compose["services"]["web"])
    for name in ("USE_X_FORWARDED_HOST", "USE_X_FORWARDED_PORT", "SECURE_PROXY_SSL_HEADER"):
        assert name in SETTINGS_ENV and enabled(env[name]), name


# -- Kubernetes -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict]:
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] != "Kustomization":
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def pod_spec(k8s, name: str) -> dict:
    return k8s[("Deployment", name)]["spec"]["template"]["spec"]


def container_env(k8s, name: str) -> dict[str, str]:
    env = {}
    (container,) = pod_spec(k8s, name)["containers"]
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(k8s[("ConfigMap", source["configMapRef"]["name"])]["data"])
        if "secretRef" in source:
            env.update(k8s[("Secret", source["secretRef"]["name"])]["stringData"])
    env.update({item["name"]: item.get("value", "") for item in container.get("env", [])})
    return env


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_k8s_deployments_and_replicas(k8s):
    for role in ROLES:
        deployment = k8s[("Deployment", role)]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k8s[("Deployment", "web")]["spec"]["replicas"] >= 2
    assert k8s[("Deployment", "worker")]["spec"]["replicas"] >= 1
    beat = k8s[("Deployment", "beat")]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"]["type"] == "Recreate", "a rolling update would run two beats at once"


def test_k8s_environment_comes_from_names_settings_read(k8s):
    for role in ROLES:
        env = container_env(k8s, role)
        assert REQUIRED_ENV <= set(env), (role, REQUIRED_ENV - set(env))
        unknown = set(env) - SETTINGS_ENV - GUNICORN_ENV
        assert not unknown, f"{role} gets variables nothing reads: {unknown}"
    secret = k8s[("Secret", "chunky-redis")]["stringData"]
    assert "SECRET_KEY" in secret and "SECRET_KEY" not in k8s[("ConfigMap", "chunky-redis")]["data"]
    # The bundled Redis is reachable under the host name the URLs use.
    host = re.match(r"rediss?://(?:[^@/]*@)?([^:/]+)", secret["REDIS_URL"]).group(1)
    assert ("Service", host) in k8s


def test_k8s_upload_volume_is_read_write_many_and_shared(k8s):
    claims = [doc for (kind, _), doc in k8s.items() if kind == "PersistentVolumeClaim"]
    shared = [c for c in claims if "ReadWriteMany" in c["spec"]["accessModes"]]
    assert len(shared) == 1
    claim = shared[0]["metadata"]["name"]
    for role in ("web", "worker"):
        spec = pod_spec(k8s, role)
        volume = next(
            v["name"]
            for v in spec["volumes"]
            if v.get("persistentVolumeClaim", {}).get("claimName") == claim
        )
        (container,) = spec["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume]
        assert "subPath" not in mount, (
            "one mount, so chunks and final files are on the same mount point"
        )
        env = container_env(k8s, role)
        assert PurePosixPath(env["CHUNKY_UPLOAD_DIR"]).is_relative_to(mount["mountPath"])
        assert PurePosixPath(env["MEDIA_ROOT"]).is_relative_to(mount["mountPath"])
        assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsUser"]


def test_k8s_web_probes_call_healthz_with_an_allowed_host(k8s):
    (container,) = pod_spec(k8s, "web")["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    allowed = container_env(k8s, "web")["ALLOWED_HOSTS"].split(",")
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/healthz"
        assert ports[check["port"]] == int(container_env(k8s, "web")["PORT"])
        host = {h["name"]: h["value"] for h in check.get("httpHeaders", [])}.get("Host")
        assert host in allowed, f"{probe}: the kubelet's Host header must be in ALLOWED_HOSTS"


def test_k8s_service_and_ingress_reach_web(k8s):
    service = k8s[("Service", "web")]
    pod_labels = k8s[("Deployment", "web")]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert "sessionAffinity" not in service["spec"] or service["spec"]["sessionAffinity"] == "None"
    ingress = k8s[("Ingress", "chunky-redis")]
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert backends and all(b["name"] == "web" for b in backends)
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert all(b["port"]["name"] in service_ports for b in backends)
    annotations = ingress["metadata"]["annotations"]
    assert not any("affinity" in key for key in annotations), "no sticky sessions"
    # The same choices as the nginx sample.
    nginx = NGINX_CONF.read_text()
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == directive(
        nginx, "client_max_body_size"
    )
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == directive(
        nginx, "proxy_request_buffering"
    )


def test_k8s_refuses_anonymous_uploads_and_trusts_the_ingress(k8s):
    for role in ROLES:
        env = container_env(k8s, role)
        assert not enabled(env["CHUNKY_ALLOW_ANONYMOUS"]), f"{role}: anonymous uploads are on"
    env = container_env(k8s, "web")
    for name in ("USE_X_FORWARDED_HOST", "USE_X_FORWARDED_PORT", "SECURE_PROXY_SSL_HEADER"):
        assert enabled(env[name]), name


# -- nginx ----------------------------------------------------------------------------------------
def directive(conf: str, name: str) -> str:
    """The value of a directive that the sample sets once (comments ignored)."""
    lines = [line.split("#", 1)[0] for line in conf.splitlines()]
    values = re.findall(rf"^\s*{name}\s+([^;]+);", "\n".join(lines), flags=re.M)
    assert len(values) == 1, f"{name}: {values}"
    return values[0].strip()


def seconds(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([smh]?)", value).groups()
    return int(number) * {"": 1, "s": 1, "m": 60, "h": 3600}[unit]


def test_nginx_request_buffering_matches_the_worker_class():
    worker_class = gunicorn_config()["worker_class"]
    buffering = directive(NGINX_CONF.read_text(), "proxy_request_buffering")
    # A sync worker (a process) or a gthread worker's thread is held for the whole upload of a
    # body, and a few slow clients starve the service: nginx must take the slow part. An async
    # worker (gevent) waits on a greenlet, so the chunk streams through.
    blocking = ("sync", "gthread", "gunicorn.workers.sync.SyncWorker")
    expected = "on" if worker_class in blocking or "ThreadWorker" in worker_class else "off"
    assert buffering == expected, (
        f"gunicorn runs {worker_class!r} workers: proxy_request_buffering {expected}"
    )


def test_nginx_timeouts_fit_gunicorn():
    conf = NGINX_CONF.read_text()
    gunicorn = gunicorn_config()
    assert seconds(directive(conf, "proxy_read_timeout")) >= gunicorn["timeout"]
    assert directive(conf, "proxy_http_version") == "1.1"
    # nginx closes idle upstream connections before gunicorn does.
    upstream = re.search(r"upstream\s+\w+\s*\{([^}]*)\}", conf).group(1)
    assert seconds(directive(upstream, "keepalive_timeout")) < gunicorn["keepalive"]
    assert re.fullmatch(r"\d+[mg]", directive(conf, "client_max_body_size"))


def nginx_block(conf: str, opening: str) -> str:
    """The body of the block that starts with ``opening`` (e.g. "location /media/")."""
    lines = "\n".join(line.split("#", 1)[0] for line in conf.splitlines())
    start = lines.index(opening)
    depth, body_start = 0, lines.index("{", start)
    for i in range(body_start, len(lines)):
        depth += {"{": 1, "}": -1}.get(lines[i], 0)
        if depth == 0:
            return lines[body_start + 1 : i]
    raise AssertionError(f"unbalanced block {opening}")


def test_nginx_serves_media_as_downloads():
    """Uploads are served on the API's origin: a page.html must never render there."""
    media = nginx_block(NGINX_CONF.read_text(), "location /media/")
    headers = dict(
        (name.lower(), value.strip('"'))
        for name, value in re.findall(r'add_header\s+(\S+)\s+("[^"]*"|\S+)\s+always;', media)
    )
    assert headers["content-disposition"] == "attachment"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"].startswith("sandbox")
    # Not the type its name suggests (text/html for page.html): always an unknown type.
    assert re.search(r"types\s*\{\s*\}", media)
    assert directive(media, "default_type") == "application/octet-stream"


def test_nginx_forwards_the_client_host_port_and_scheme():
    conf = NGINX_CONF.read_text()
    server = nginx_block(conf, "server {")
    assert directive(server, "proxy_set_header Host") == "$http_host", "$host drops the port"
    assert directive(server, "proxy_set_header X-Forwarded-Host") == "$http_host"
    assert directive(server, "proxy_set_header X-Forwarded-Proto") == "$scheme"
    port = directive(server, "proxy_set_header X-Forwarded-Port")
    assert port.startswith("$") and f"map $http_host {port}" in conf


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


@pytest.mark.live  # runs nginx -t
def test_nginx_accepts_the_sample(tmp_path):
    # No skip: a missing nginx must not pass for an accepted config (make test installs it).
    nginx = nginx_binary()
    assert nginx is not None, "nginx is not installed: run deploy/test-setup.sh (make test does)"
    # "web" only resolves inside Compose; nginx -t resolves upstream names.
    site = re.sub(r"(\bserver\s+)web:", r"\g<1>127.0.0.1:", NGINX_CONF.read_text())
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  client_body_temp_path {tmp_path}/body;\n  include {tmp_path}/site.conf;\n}}\n"
    )
    result = subprocess.run(
        [
            nginx,
            "-t",
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
            "-e",
            str(tmp_path / "error.log"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


# -- Dockerfile -----------------------------------------------------------------------------------
def test_dockerfile_builds_the_service():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, flags=re.M)
    # The server extra and every extra a documented deployment needs (S3, metrics).
    extras = re.search(r"pip install '\.\[([a-z0-9,-]+)\]'", dockerfile).group(1).split(",")
    assert {"server", "s3", "metrics"} <= set(extras)
    assert "npm ci" in dockerfile and "package.json" in dockerfile
    for path in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, flags=re.M):
        for source in path.split():
            if "*" not in source:
                assert source == "README.md" or (REPO / source).exists(), (
                    f"COPY {source}: no such path"
                )
    cmd = re.search(r"^CMD (.+)$", dockerfile, flags=re.M).group(1)
    assert "deploy/gunicorn.conf.py" in cmd and (REPO / "deploy" / "gunicorn.conf.py").exists()
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "node_modules", "var"} <= set(ignored)


def test_worker_and_beat_are_restarted_and_probed(compose, k8s):
    """A process that exits comes back; a hung one fails its probe (see docs/howto/deploy.md, "Restarts")."""
    for name, service in compose["services"].items():
        assert service.get("restart") == "unless-stopped", name
    assert "inspect ping" in " ".join(compose["services"]["worker"]["healthcheck"]["test"])
    assert "beat-heartbeat" in " ".join(compose["services"]["beat"]["healthcheck"]["test"])
    for role, words in (("worker", "inspect ping"), ("beat", "beat-heartbeat")):
        spec = pod_spec(k8s, role)
        assert spec.get("restartPolicy", "Always") == "Always"
        (container,) = spec["containers"]
        assert words in " ".join(container["livenessProbe"]["exec"]["command"]), role
    heartbeat = container_env(k8s, "beat")["CELERY_BEAT_HEARTBEAT_FILE"]
    assert heartbeat in " ".join(container["livenessProbe"]["exec"]["command"])
    assert compose_env(compose["services"]["beat"])["CELERY_BEAT_HEARTBEAT_FILE"] == heartbeat
    # The deployed workers run as the Procfile's (and so as tests/test_outages.py's) does.
    procfile = next(
        line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("worker:")
    )
    for flag in ("--without-gossip", "--without-mingle", "--without-heartbeat"):
        assert flag in procfile
        assert flag in compose["services"]["worker"]["command"]
        assert flag in pod_spec(k8s, "worker")["containers"][0]["command"]


def _bundled_sync_every(monkeypatch, value: str | None) -> int:
    """CHUNKY_REDIS_SYNC_EVERY of the bundled settings, run afresh with CHUNKY_SYNC_EVERY=value."""
    for name in ("CHUNKY_SYNC_EVERY", "REDIS_URL"):  # no REDIS_URL: no SECRET_KEY needed
        monkeypatch.delenv(name, raising=False)
    if value is not None:
        monkeypatch.setenv("CHUNKY_SYNC_EVERY", value)
    module = runpy.run_path(str(REPO / "deploy" / "chunky_site" / "settings.py"))
    return int(module["CHUNKY_REDIS_SYNC_EVERY"])


def test_the_bundled_service_syncs_in_16_mib_windows_unless_told(k8s, monkeypatch):
    assert _bundled_sync_every(monkeypatch, None) == 16 << 20
    assert _bundled_sync_every(monkeypatch, "") == 16 << 20
    assert _bundled_sync_every(monkeypatch, "0") == 0  # "0" is a value, not "unset"
    assert _bundled_sync_every(monkeypatch, "1048576") == 1 << 20
    # Kubernetes runs web pods on several nodes, each with its own page cache: a sync per chunk.
    for role in ("web", "worker"):
        assert container_env(k8s, role)["CHUNKY_SYNC_EVERY"] == "0", role
