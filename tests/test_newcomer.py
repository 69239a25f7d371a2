"""What a new user runs first: the README's commands and snippets, and the set-up scripts."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support.processes import REPO, SiteProcess, live_env

README = (REPO / "README.md").read_text()


def python_block(starting_with: str) -> str:
    for block in re.findall(r"```python\n(.*?)```", README, re.S):
        if block.startswith(starting_with):
            return block
    raise AssertionError(f"no python block in README.md starts with {starting_with!r}")


@pytest.mark.live
@pytest.mark.slow
def test_the_readme_python_api_snippet_runs(tmp_path):
    """The snippet as printed, with its file and URL pointed at a live site."""
    snippet = python_block("from chunky_redis.client import upload, status")
    path = tmp_path / "big.iso"
    path.write_bytes(os.urandom(300_000))
    # The embedded default (fakeredis, eager tasks): one process that finishes uploads itself.
    env = live_env(tmp_path, REDIS_URL="", CELERY_BROKER_URL="", CHUNKY_ALLOW_ANONYMOUS="1")
    with SiteProcess(env, workers=1) as site:
        code = snippet.replace('"big.iso"', repr(str(path))).replace(
            '"https://files.example.com/upload/"', repr(site.url + "/upload/")
        )
        assert code != snippet and "files.example.com" not in code
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
        again = namespace["status"](namespace["result"]["status_url"])
    assert again["status"] == "complete" and again["size"] == 300_000


def test_readme_commands_name_files_that_exist():
    for script in re.findall(r"python (\S+\.py)\b", README):
        assert (REPO / script).is_file(), f"README.md runs {script}, which does not exist"


def test_readme_installs_the_package_from_a_source_that_has_it():
    # chunky_redis is not on a package index: a bare `pip install chunky_redis` fails.
    bare = re.findall(r"pip install ['\"]?chunky_redis(?:\[\w+\])?['\"]?(?=\s|`|$)(?!\s*@)", README)
    assert bare == [], bare


def test_test_setup_waits_for_the_apt_lock():
    script = (REPO / "deploy" / "test-setup.sh").read_text()
    calls = [line for line in script.splitlines() if re.search(r"\bapt-get\b", line.split("#")[0])]
    assert calls and all("DPkg::Lock::Timeout=" in line for line in calls), calls


def settings_error(**env: str) -> str:
    """Import the bundled settings in a fresh interpreter; what it refuses with, if anything."""
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "REDIS_URL")}
    out = subprocess.run(
        [sys.executable, "-c", "import chunky_site.settings"],
        env={**clean, "PYTHONPATH": str(REPO / "deploy"), **env},
        capture_output=True,
        text=True,
    )
    return out.stderr.strip().splitlines()[-1] if out.returncode else ""


@pytest.mark.live  # imports the settings in fresh interpreters
def test_production_settings_need_a_real_secret_key():
    redis_url = "redis://127.0.0.1:6379/0"
    assert "Set SECRET_KEY" in settings_error(REDIS_URL=redis_url)
    example = "change-me-to-50-random-characters"  # deploy/k8s/secret.yaml's
    assert example in (REPO / "deploy" / "k8s" / "secret.yaml").read_text()
    assert "example value" in settings_error(REDIS_URL=redis_url, SECRET_KEY=example)
    assert settings_error(REDIS_URL=redis_url, SECRET_KEY="x" * 50) == ""
    assert settings_error() == ""  # the embedded default needs none
