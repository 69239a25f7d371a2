"""Keeps `make test-fast` free of processes: a test that starts one must say so with a marker.

`make test-fast` deselects the tests marked `live`, `browser`, `fault`, `slow` and `packaging`
(pyproject.toml describes each). A marker is easy to forget, and one unmarked test that starts a
gunicorn makes the fast suite slow for everyone, so any process started from the test code
(tests/, tests/support/ included) by a test without one of those markers fails that test and says
which marker to add. Processes that libraries start on their own (ctypes looking for libcrypto,
for example) are not the tests' doing and are let through.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = str(Path(__file__).resolve().parents[1])
# The markers that allow a test to start processes: all that make test-fast deselects.
ALLOWED = ("live", "browser", "fault", "slow", "packaging")

_current: pytest.Item | None = None
_original_init = subprocess.Popen.__init__


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # tryfirst: before the item's fixtures are set up, module-scoped ones included.
    global _current
    _current = item


def pytest_runtest_logfinish() -> None:
    global _current
    _current = None


def _started_by_test_code() -> bool:
    frame = sys._getframe(2)  # the caller of Popen()
    while frame is not None and frame.f_code.co_filename == subprocess.__file__:
        frame = frame.f_back  # subprocess.run() and friends
    return frame is not None and frame.f_code.co_filename.startswith(TESTS)


def _guarded_init(self: subprocess.Popen, *args: object, **kwargs: object) -> None:
    item = _current
    if (
        item is not None
        and not any(item.get_closest_marker(name) for name in ALLOWED)
        and _started_by_test_code()
    ):
        command = args[0] if args else kwargs.get("args")
        pytest.fail(
            f"{item.nodeid} starts a process ({command!r}) but is not marked live: add "
            "pytestmark = pytest.mark.live to the module (or @pytest.mark.live to the test), "
            "so that make test-fast leaves it out.",
            pytrace=False,
        )
    _original_init(self, *args, **kwargs)  # type: ignore[arg-type]


def install() -> None:
    subprocess.Popen.__init__ = _guarded_init  # type: ignore[method-assign]
