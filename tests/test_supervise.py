"""deploy/supervise.py, what `make run` runs: a dead process comes back, the others stay up.

Real processes from a small Procfile; every test leaves nothing running.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import REPO, wait_for

sys.path.insert(0, str(REPO / "deploy"))
from supervise import Backoff, parse_procfile, shell_line  # noqa: E402

pytestmark = pytest.mark.live

SLEEPER = f"{sys.executable} -c 'import time; time.sleep(600)'"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Supervised:
    """``python deploy/supervise.py`` on a Procfile of our own; its log is its stderr."""

    def __init__(self, tmp_path: Path, procfile: str, *args: str):
        (tmp_path / "Procfile").write_text(procfile)
        self.log_path = tmp_path / "supervise.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "deploy" / "supervise.py"), *args],
            cwd=tmp_path,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        return self.log_path.read_text()

    def pids(self, name: str) -> list[int]:
        return [int(p) for p in re.findall(rf"{name} started \(pid (\d+)\)", self.text())]

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in self.pids(r"\w+"):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


@pytest.fixture
def supervised(tmp_path):
    started: list[Supervised] = []

    def start(procfile: str, *args: str) -> Supervised:
        started.append(Supervised(tmp_path, procfile, *args))
        return started[-1]

    yield start
    for s in started:
        s.close()


def test_procfile_lines():
    text = "# comment\nweb: A=1 gunicorn x  \n\nworker:celery -A tasks worker\nnot a line\n"
    assert parse_procfile(text) == {"web": "A=1 gunicorn x", "worker": "celery -A tasks worker"}
    assert list(parse_procfile((REPO / "Procfile").read_text())) == ["web", "worker", "beat"]


def test_commands_run_in_place_of_the_shell():
    assert shell_line("celery -A tasks beat") == "exec celery -A tasks beat"
    assert shell_line("A=1 B=x/y gunicorn -c c.py") == "export A=1 B=x/y; exec gunicorn -c c.py"
    # As the Procfile's web line has it: the assignment reaches the process, which is the leader.
    out = subprocess.run(
        ["/bin/sh", "-c", shell_line("GREETING=hi sh -c 'echo $GREETING $$'")],
        capture_output=True,
        text=True,
    )
    assert out.stdout.split()[0] == "hi"


def test_backoff_doubles_up_to_its_maximum():
    backoff = Backoff(initial=1, maximum=30)
    assert [backoff.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.fault
def test_a_killed_process_is_restarted_and_the_others_keep_running(supervised):
    s = supervised(f"web: {SLEEPER}\nworker: {SLEEPER}\n")
    [web], [worker] = wait_for(
        lambda: s.pids("web") and s.pids("worker") and (s.pids("web"), s.pids("worker")),
        message="both started",
    )
    os.kill(worker, signal.SIGKILL)
    log = wait_for(
        lambda: len(s.pids("worker")) == 2 and s.text(), timeout=10, message="the worker restarted"
    )
    assert f"worker (pid {worker}) exited with signal 9" in log
    assert "restarting in 1 s (restart 1)" in log
    assert alive(web) and s.pids("web") == [web]  # the web server was not touched
    assert alive(s.pids("worker")[1])

    # Killed again at once: the pause doubles.
    os.kill(s.pids("worker")[1], signal.SIGKILL)
    wait_for(lambda: "restarting in 2 s (restart 2)" in s.text(), message="a longer pause")
    assert s.proc.poll() is None


def test_sigterm_stops_every_process_and_what_they_started(supervised):
    # The web entry starts a child of its own, as gunicorn and Celery do.
    child = f'{sys.executable} -c \'import subprocess, time; subprocess.Popen(["sleep", "600"]); time.sleep(600)\''
    s = supervised(f"web: {child}\nworker: {SLEEPER}\n")
    wait_for(lambda: s.pids("web") and s.pids("worker"), message="both started")
    web = s.pids("web")[0]
    grandchild = wait_for(
        lambda: (
            (kids := Path(f"/proc/{web}/task/{web}/children").read_text().split()) and int(kids[0])
        ),
        message="the grandchild",
    )
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(20) == 0
    assert not alive(web) and not alive(s.pids("worker")[0]) and not alive(grandchild)
    assert "stopped" in s.text()


def test_a_process_that_ignores_sigterm_is_killed_after_the_stop_timeout(supervised):
    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    stubborn = f"{sys.executable} -c '{ignore}'"
    s = supervised(f"worker: {stubborn}\n", "--stop-timeout", "1")
    wait_for(lambda: s.pids("worker"), message="started")
    time.sleep(0.5)  # let it install its handler
    began = time.monotonic()
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(20) == 0
    assert 1 <= time.monotonic() - began < 10
    assert "still running: SIGKILL" in s.text()
    assert not alive(s.pids("worker")[0])


def test_a_process_that_cannot_start_makes_it_give_up(supervised):
    s = supervised(f"web: {SLEEPER}\nworker: sh -c 'exit 3'\n", "--backoff-max", "0.1")
    assert s.proc.wait(30) == 1
    log = s.text()
    assert log.count("worker started") == 5
    assert "exited with status 3 5 times in a row" in log
    assert not alive(s.pids("web")[0])


def test_only_the_named_processes_run(supervised, tmp_path):
    s = supervised(f"web: {SLEEPER}\nworker: {SLEEPER}\n", "web")
    wait_for(lambda: s.pids("web"), message="web started")
    time.sleep(0.3)
    assert s.pids("worker") == []
    bad = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "supervise.py"), "nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "not in Procfile: nope" in bad.stderr
