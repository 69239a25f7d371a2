"""The test helper that runs server processes stops what it started, even a process
that ignores SIGTERM."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import _Process, wait_for

pytestmark = pytest.mark.live

SCRIPT = """
import signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""


class Sleeper(_Process):
    def __init__(self, tmp_path: Path, on_sigterm: str):
        self.log_path = tmp_path / f"sleeper-{on_sigterm}.log"
        self.args = [sys.executable, "-c", SCRIPT, on_sigterm]

    def start(self) -> Sleeper:
        self._spawn(self.args, {})
        wait_for(lambda: "ready" in self.log_text(), timeout=30, message="the sleeper")
        return self


def test_stop_terminates_a_process_that_honours_sigterm(tmp_path):
    with Sleeper(tmp_path, "exit") as sleeper:
        pass
    assert sleeper.proc.returncode == -signal.SIGTERM


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path):
    sleeper = Sleeper(tmp_path, "ignore").start()
    started = time.monotonic()
    sleeper.stop(grace=0.5)
    assert sleeper.proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10
