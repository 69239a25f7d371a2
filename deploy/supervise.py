"""Runs the processes of a Procfile and keeps them running: what `make run` uses.

    python deploy/supervise.py [--procfile Procfile] [NAME ...]

Every process named (all of the Procfile by default) is started with `sh -c`, in its own
process group. One that exits on its own is started again after a pause that doubles from
1 s up to 30 s and starts over once the process has stayed up for a minute; each exit and
restart is logged on stderr. The others are left alone: a dead Celery worker does not take
the web server down with it. SIGINT (Ctrl-C) or SIGTERM stops everything: SIGTERM to every
process group (gunicorn and Celery then finish what they are doing), SIGKILL to whatever is
left after --stop-timeout seconds, or at once on a second Ctrl-C.

A process that keeps failing right after it starts (a bad setting, a port in use) is a
mistake to fix, not an outage to ride out: after five such failures in a row the supervisor
stops everything and exits with status 1.

Standard library only, so it runs wherever the service runs. Honcho and foreman read
Procfiles too, but stop every process when one exits, which is what this is here to avoid.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+?)\s*$")


def parse_procfile(text: str) -> dict[str, str]:
    """``name: command`` lines, in order; anything else (blank lines, comments) is skipped."""
    return {m.group(1): m.group(2) for line in text.splitlines() if (m := _LINE.match(line))}


_ASSIGNMENTS = re.compile(r"((?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)(.*)", re.S)


def shell_line(command: str) -> str:
    """``A=1 cmd args`` as ``export A=1; exec cmd args``: the command replaces the shell.

    With `exec`, the process the supervisor watches and signals is the command itself (gunicorn's
    master, Celery's main process), not a shell waiting for it. A POSIX shell cannot `exec` a
    line that starts with variable assignments, hence the export.
    """
    assignments, rest = _ASSIGNMENTS.fullmatch(command.strip()).groups()
    prefix = f"export {assignments.strip()}; " if assignments.strip() else ""
    return f"{prefix}exec {rest}"


def log(message: str) -> None:
    print(f"supervise: {message}", file=sys.stderr, flush=True)


@dataclass
class Backoff:
    """Pause before restart number n: ``initial * 2**(n-1)``, at most ``maximum``."""

    initial: float = 1.0
    maximum: float = 30.0
    stable_after: float = 60.0  # a run this long counts as healthy: the next pause starts over
    fast_failure: float = 10.0  # a run shorter than this, ended by an error, is a "fast failure"

    def delay(self, restarts: int) -> float:
        return min(self.maximum, self.initial * 2 ** max(0, restarts - 1))


@dataclass
class Child:
    name: str
    command: str
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restarts: int = 0  # restarts since the process last ran for `stable_after`
    fast_failures: int = 0  # consecutive failures soon after starting
    restart_at: float | None = None


class Supervisor:
    def __init__(
        self,
        commands: dict[str, str],
        *,
        backoff: Backoff | None = None,
        stop_timeout: float = 30.0,
        max_fast_failures: int = 5,
    ):
        self.children = [Child(name, command) for name, command in commands.items()]
        self.backoff = backoff or Backoff()
        self.stop_timeout = stop_timeout
        self.max_fast_failures = max_fast_failures
        self.stopping = False
        self.forced = False
        self.gave_up = False

    # -- signals ----------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stopping:
            self.forced = True  # a second Ctrl-C: no more waiting
        self.stopping = True

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    # -- processes --------------------------------------------------------------------------
    def _start(self, child: Child) -> None:
        # A session of its own: Ctrl-C in the terminal reaches only the supervisor, which then
        # stops each process group in order instead of every process getting SIGINT at once
        # (Celery treats a second SIGINT as "cold shutdown now").
        child.proc = subprocess.Popen(
            ["/bin/sh", "-c", shell_line(child.command)], start_new_session=True
        )
        child.started = time.monotonic()
        child.restart_at = None
        log(f"{child.name} started (pid {child.proc.pid}): {child.command}")

    @staticmethod
    def _kill_group(child: Child) -> None:
        if child.proc is not None:
            try:
                os.killpg(child.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _on_exit(self, child: Child, code: int) -> None:
        # What the dead leader leaves in its group (Celery pool processes, gunicorn workers) is
        # orphaned: it would hold the port or run tasks nobody acknowledges.
        self._kill_group(child)
        ran = time.monotonic() - child.started
        if ran >= self.backoff.stable_after:
            child.restarts = 0
        child.restarts += 1
        child.fast_failures = child.fast_failures + 1 if ran < self.backoff.fast_failure else 0
        how = f"signal {-code}" if code < 0 else f"status {code}"
        if child.fast_failures >= self.max_fast_failures:
            log(
                f"{child.name} exited with {how} {child.fast_failures} times in a row within "
                f"{self.backoff.fast_failure:g} s of starting; stopping everything"
            )
            self.gave_up = self.stopping = True
            return
        delay = self.backoff.delay(child.restarts)
        child.restart_at = time.monotonic() + delay
        log(
            f"{child.name} (pid {child.proc.pid}) exited with {how} after {ran:.1f} s; "
            f"restarting in {delay:g} s (restart {child.restarts})"
        )

    def poll(self) -> None:
        """One round: notice exits, start what is due."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and child.restart_at is None:
                code = child.proc.poll()
                if code is not None and not self.stopping:
                    self._on_exit(child, code)
            if child.restart_at is not None and now >= child.restart_at and not self.stopping:
                self._start(child)

    def stop_all(self) -> None:
        # SIGTERM to the leader only: gunicorn's master and Celery's main process stop their
        # own workers in order (a Celery pool process killed directly loses its task's result).
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            child.proc.terminate()
        deadline = time.monotonic() + self.stop_timeout
        while any(c.proc.poll() is None for c in running):
            if self.forced or time.monotonic() >= deadline:
                for child in running:
                    if child.proc.poll() is None:
                        log(f"{child.name} (pid {child.proc.pid}) still running: SIGKILL")
                break
            time.sleep(0.1)
        # Then SIGKILL to every group: what is still running, and what outlived its leader
        # (a pool process, a gunicorn worker). Nothing the supervisor started is left behind.
        for child in self.children:
            self._kill_group(child)
            if child.proc is not None:
                child.proc.wait()

    def run(self) -> int:
        self.install_signal_handlers()
        for child in self.children:
            self._start(child)
        while not self.stopping:
            self.poll()
            time.sleep(0.1)
        if not self.gave_up:
            log("stopping: SIGTERM to every process")
        self.stop_all()
        log("stopped")
        return 1 if self.gave_up else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="processes to run (default: all)")
    parser.add_argument("--procfile", type=Path, default=Path("Procfile"))
    parser.add_argument("--stop-timeout", type=float, default=30.0)
    parser.add_argument("--backoff-max", type=float, default=30.0)
    args = parser.parse_args(argv)
    commands = parse_procfile(args.procfile.read_text())
    unknown = [name for name in args.names if name not in commands]
    if unknown:
        parser.error(f"not in {args.procfile}: {', '.join(unknown)}")
    if args.names:
        commands = {name: commands[name] for name in args.names}
    supervisor = Supervisor(
        commands, backoff=Backoff(maximum=args.backoff_max), stop_timeout=args.stop_timeout
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
