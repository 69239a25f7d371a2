"""The wheel and the sdist as a user gets them: built, checked, installed into a new virtualenv.

Needs the package index (pip installs Django, redis and Celery into the new virtualenv).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import tomllib

from tests.support.processes import REPO

pytestmark = [pytest.mark.packaging, pytest.mark.slow]

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
NAME_VERSION = f"{PROJECT['name']}-{PROJECT['version']}"
# What a user's site needs to load the app: the app and its URLs, nothing of this repository.
SETTINGS = """
SECRET_KEY = "packaging-test"
DEBUG = True
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "chunky_redis"]
ROOT_URLCONF = "site_urls"
CHUNKY_REDIS_UPLOAD_DIR = "chunks"
"""
URLS = """
from django.urls import include, path

urlpatterns = [path("files/", include("chunky_redis.urls"))]
"""


def run(*args: str | Path, cwd: Path = REPO, env: dict | None = None, check: bool = True):
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, REPO)
    return out


def wheel(dist: Path) -> Path:
    [path] = dist.glob("*.whl")
    return path


def sdist(dist: Path) -> Path:
    [path] = dist.glob("*.tar.gz")
    return path


def package_files() -> set[str]:
    """The files of the package in this checkout."""
    return {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "chunky_redis").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_twine_accepts_the_metadata(dist):
    result = run(sys.executable, "-m", "twine", "check", "--strict", wheel(dist), sdist(dist))
    assert result.stdout.count("PASSED") == 2, result.stdout


def test_the_wheel_holds_the_package_and_nothing_else(dist):
    names = set(zipfile.ZipFile(wheel(dist)).namelist())
    metadata = {name for name in names if name.startswith(f"{NAME_VERSION}.dist-info/")}
    assert names - metadata == package_files()
    assert "chunky_redis/py.typed" in names
    assert f"{NAME_VERSION}.dist-info/licenses/LICENSE" in metadata


def test_the_sdist_holds_the_package_its_metadata_and_documents(dist):
    with tarfile.open(sdist(dist)) as archive:
        names = {name.removeprefix(f"{NAME_VERSION}/") for name in archive.getnames()}
    expected = package_files() | {
        "pyproject.toml",
        "PKG-INFO",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        ".gitignore",  # hatchling keeps it: it decides what the sdist leaves out
    }
    assert names == expected


def new_virtualenv(path: Path, **env: str) -> tuple[Path, dict]:
    """A virtualenv of its own, and an environment that sees nothing of this checkout."""
    run(sys.executable, "-m", "venv", path)
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    return path / "bin" / "python", {**clean, **env}


def assert_installed_in(python: Path, venv: Path, cwd: Path, env: dict) -> None:
    script = "import chunky_redis; print(chunky_redis.__file__)"
    located = run(python, "-c", script, cwd=cwd, env=env)
    assert Path(located.stdout.strip()).is_relative_to(venv)  # not this checkout


def test_a_clean_virtualenv_installs_it_and_manage_py_check_names_missing_extras(dist, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "site_settings.py").write_text(SETTINGS)
    (site / "site_urls.py").write_text(URLS)
    venv = tmp_path / "venv"
    python, env = new_virtualenv(venv, DJANGO_SETTINGS_MODULE="site_settings", PYTHONPATH=str(site))
    check = [python, "-m", "django", "check"]

    # The core alone: the app loads, and the embedded Redis's missing package is named.
    run(python, "-m", "pip", "install", "--quiet", wheel(dist), env=env)
    assert_installed_in(python, venv, site, env)
    without = run(*check, cwd=site, env=env, check=False)
    assert without.returncode != 0
    assert "chunky_redis.E010" in without.stderr
    assert "install the extra chunky_redis[embedded]" in without.stderr
    client = run(python, "-m", "chunky_redis", "--help", cwd=site, env=env, check=False)
    assert client.returncode != 0 and "chunky_redis[client]" in client.stderr

    # With the extras that configuration needs, the check passes.
    run(python, "-m", "pip", "install", "--quiet", f"{wheel(dist)}[embedded,client]", env=env)
    result = run(*check, cwd=site, env=env)
    assert "no issues" in result.stdout
    assert run(python, "-m", "chunky_redis", "--help", cwd=site, env=env).stdout.startswith("usage")


def test_the_server_extra_is_all_the_bundled_service_needs(dist, tmp_path):
    # The bundled site and its Celery app from this checkout, the package from the wheel only.
    path = tmp_path / "path"
    path.mkdir()
    (path / "tasks").symlink_to(REPO / "tasks")
    (path / "chunky_site").symlink_to(REPO / "deploy" / "chunky_site")
    venv = tmp_path / "venv"
    python, env = new_virtualenv(
        venv,
        DJANGO_SETTINGS_MODULE="chunky_site.settings",
        PYTHONPATH=str(path),
        CHUNKY_VAR_DIR=str(tmp_path / "var"),
        SQLITE_PATH=str(tmp_path / "db.sqlite3"),
        DEBUG="1",  # the embedded Redis, without production's warning
    )
    run(python, "-m", "pip", "install", "--quiet", f"{wheel(dist)}[server]", env=env)
    assert_installed_in(python, venv, tmp_path, env)
    assert "no issues" in run(python, "-m", "django", "check", cwd=tmp_path, env=env).stdout
    run(python, "-c", "import chunky_site.wsgi, gunicorn, whitenoise", cwd=tmp_path, env=env)
