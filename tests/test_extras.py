"""A missing optional package is named with the extra that installs it, wherever it is needed."""

from __future__ import annotations

import runpy
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from chunky_redis import extras, runtime


def test_every_extra_named_is_one_pyproject_declares():
    import tomllib

    from tests.support.processes import REPO

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert set(extras.EXTRAS.values()) <= set(declared["optional-dependencies"])


def test_the_embedded_redis_without_fakeredis_is_a_clear_error(settings, monkeypatch):
    settings.CHUNKY_REDIS_REDIS_URL = None
    monkeypatch.setitem(sys.modules, "fakeredis", None)
    with pytest.raises(ImproperlyConfigured, match=r"install the extra chunky_redis\[embedded\]"):
        runtime.get_redis()


def test_an_alias_without_django_redis_is_a_clear_error(settings, monkeypatch):
    settings.CHUNKY_REDIS_REDIS_ALIAS = "default"
    monkeypatch.setitem(sys.modules, "django_redis", None)
    with pytest.raises(
        ImproperlyConfigured, match=r"install the extra chunky_redis\[django-redis\]"
    ):
        runtime.get_redis()


@pytest.mark.parametrize("missing", ["requests", "tqdm"])
def test_the_command_line_without_the_client_extra_says_what_to_install(monkeypatch, missing):
    for module in [m for m in sys.modules if m.startswith("chunky_redis.client")]:
        monkeypatch.delitem(sys.modules, module)  # imported afresh, so that the import fails
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("chunky_redis", run_name="__main__")
    assert f"{missing} is not installed" in str(exit_.value.code)
    assert "install the extra chunky_redis[client]" in str(exit_.value.code)
