"""The deployment files scrape every web and worker process, and keep /metrics from the public."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.test_deploy_files import (  # noqa: F401  (compose and k8s are fixtures)
    DEPLOY,
    compose,
    compose_env,
    container_env,
    enabled,
    k8s,
    pod_spec,
)


def scrape_jobs() -> dict[str, dict]:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_compose_scrapes_every_web_and_worker_replica(compose):  # noqa: F811
    services = compose["services"]
    prometheus = services["prometheus"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert all(p.startswith("127.0.0.1:") for p in prometheus["ports"]), "the host only"
    jobs = scrape_jobs()
    for role, port_variable in (("web", "PORT"), ("worker", "CHUNKY_METRICS_WORKER_PORT")):
        env = compose_env(services[role])
        assert enabled(env["CHUNKY_METRICS"]), f"{role}: metrics are off"
        (target,) = jobs[f"chunky-{role}"]["dns_sd_configs"]
        assert target["names"] == [role] and target["type"] == "A"
        assert str(target["port"]) == env[port_variable], role
        assert jobs[f"chunky-{role}"]["metrics_path"] == "/metrics"
    # The worker's pool processes count in multiprocess mode (the web's: gunicorn.conf.py).
    assert compose_env(services["worker"])["PROMETHEUS_MULTIPROC_DIR"]


def test_k8s_pods_are_annotated_for_the_scrape_and_the_web_one_wants_a_token(k8s):  # noqa: F811
    for role, port in (("web", "8000"), ("worker", "9808")):
        template = k8s[("Deployment", role)]["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == port
        assert annotations["prometheus.io/path"] == "/metrics"
        (container,) = pod_spec(k8s, role)["containers"]
        assert int(port) in [p["containerPort"] for p in container["ports"]], role
        assert enabled(container_env(k8s, role)["CHUNKY_METRICS"])
    worker = container_env(k8s, "worker")
    assert worker["CHUNKY_METRICS_WORKER_PORT"] == "9808" and worker["PROMETHEUS_MULTIPROC_DIR"]
    # The Ingress routes every path to web: /metrics is guarded by the token there.
    assert container_env(k8s, "web")["CHUNKY_METRICS_TOKEN"]


def test_the_sample_nginx_never_serves_the_metrics():
    conf = (DEPLOY / "nginx" / "chunky_redis.conf").read_text()
    block = re.search(r"location ~ \^/metrics/\?\$ \{(.*?)\}", conf, re.DOTALL)
    assert block and block.group(1).strip() == "return 404;"


@pytest.mark.live  # imports the settings in fresh interpreters
def test_the_bundled_site_refuses_the_example_metrics_token():
    from tests.test_newcomer import settings_error

    example = "change-me-to-a-random-metrics-token"  # deploy/k8s/secret.yaml's
    assert example in (DEPLOY / "k8s" / "secret.yaml").read_text()
    assert "example value" in settings_error(CHUNKY_METRICS_TOKEN=example)
    assert settings_error(CHUNKY_METRICS_TOKEN="x" * 32) == ""
