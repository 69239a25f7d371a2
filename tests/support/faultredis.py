"""A private redis-server for the fault suite (tests/faults): killed, restarted empty or with its data, frozen.

Never the shared Redis at 6379: each instance has its own free port and its own
--dir, and is killed (by its own pid) when the test ends.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from .processes import free_port


class RedisServer:
    """``persistent=True``: every write is in the append-only file before it is answered
    (``--appendonly yes --appendfsync always``), so a kill -9 loses nothing acknowledged."""

    def __init__(self, directory: Path, *, port: int | None = None, persistent: bool = False):
        self.directory = Path(directory)
        self.port = port or free_port()
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None
        self.log_path = self.directory.parent / f"redis-{self.port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--save", "", "--protected-mode", "no"]
        if self.persistent:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log_path.read_text()}")
            try:
                if self.client().ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not answer")

    def kill(self) -> None:
        """kill -9: whatever was not yet in the append-only file is gone."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen process must be able to die
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self, *, empty: bool) -> None:
        """Kill -9 and start again on the same port, with its data or with none."""
        self.kill()
        if empty:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.start()

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.kill()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
