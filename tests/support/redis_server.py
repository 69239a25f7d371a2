"""A private redis-server for tests that stop, kill, freeze or restart Redis.

Never the shared Redis at 127.0.0.1:6379: each instance has its own free port and
directory, and ``close()`` leaves nothing running.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from .processes import free_port


class RedisServer:
    def __init__(self, directory: Path, *, port: int | None = None):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        # appendfsync always: "killed with its data" then means every acknowledged write survives.
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--dir", str(self.dir), "--save", "", "--daemonize", "no"]
            + ["--appendonly", "yes", "--appendfsync", "always"]
            + ["--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self, *, wipe: bool = False) -> None:
        """SIGKILL; with ``wipe`` its data goes too, so it comes back empty."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if wipe:
            for path in self.dir.glob("appendonly*"):
                shutil.rmtree(path) if path.is_dir() else path.unlink()

    def stop(self) -> None:
        """SIGTERM: Redis shuts down cleanly, as a `docker restart` does."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def restart(self, down: float, *, kill: bool = False, wipe: bool = False) -> None:
        self.kill(wipe=wipe) if kill or wipe else self.stop()
        time.sleep(down)
        self.start()

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.thaw()
            self.kill()
