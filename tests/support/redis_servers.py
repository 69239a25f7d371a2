"""Private Redis servers for tests: one redis-server, and a Sentinel-managed primary.

Each runs its own redis-server (and redis-sentinel) processes on free loopback ports with
their own directories, is started once per test session and stopped at its end. They
can be failed over, killed and restarted without touching the shared Redis on 6379.
redis_cluster.py builds a Redis Cluster from the same RedisNode.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from tests.support.processes import wait_for

HOST = "127.0.0.1"


def free_ports(count: int) -> list[int]:
    """Distinct free ports (held open together, so that no two are the same)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class RedisNode:
    """One redis-server process with its own directory."""

    def __init__(self, root: Path, port: int, args: list[str]):
        self.port = port
        self.dir = root / str(port)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.args = args
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisNode:
        self.log = open(self.dir / "log", "ab")
        command = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "no",
            *self.args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._answers, timeout=20, message=f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"redis-server on {self.port} exited: {self.log_text()}")
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(HOST, self.port, socket_timeout=5)

    def raw(self, *args):
        """A command's answer as the server sent it (redis-py parses some into dicts)."""
        connection = redis.Connection(host=HOST, port=self.port, socket_timeout=5)
        try:
            connection.send_command(*args)
            return connection.read_response()
        finally:
            connection.disconnect()

    def kill(self) -> None:
        """SIGKILL: no chance to hand anything over."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()

    def log_text(self) -> str:
        path = self.dir / "log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


class LocalSentinel:
    """A primary, one replica and three Sentinels (quorum 2) watching service ``SERVICE``."""

    SERVICE = "chunky-primary"

    def __init__(self, root: Path):
        ports = free_ports(5)
        self.primary = RedisNode(root, ports[0], [])
        self.replica = RedisNode(root, ports[1], ["--replicaof", HOST, str(ports[0])])
        self.sentinel_ports = ports[2:]
        self.root = root
        self.sentinels: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"{HOST}:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def start(self) -> LocalSentinel:
        self.primary.start()
        self.replica.start()
        wait_for(
            lambda: self.replica.client().info("replication").get("master_link_status") == "up",
            timeout=20,
            message="the replica to sync",
        )
        for port in self.sentinel_ports:
            conf = self.root / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind {HOST}\ndir {self.root}\n"
                f"sentinel monitor {self.SERVICE} {HOST} {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
                f"sentinel failover-timeout {self.SERVICE} 10000\n"
            )
            log = open(self.root / f"sentinel-{port}.log", "ab")
            self.sentinels.append(
                subprocess.Popen(_sentinel_command(conf), stdout=log, stderr=subprocess.STDOUT)
            )
        wait_for(self._sentinels_know_the_replica, timeout=30, interval=0.2, message="sentinels")
        return self

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(HOST, self.sentinel_ports[index], socket_timeout=5)

    def _sentinels_know_the_replica(self) -> bool:
        for index in range(len(self.sentinel_ports)):
            try:
                client = self.sentinel_client(index)
                replicas = client.execute_command("SENTINEL REPLICAS", self.SERVICE)
                peers = client.execute_command("SENTINEL SENTINELS", self.SERVICE)
            except redis.RedisError:
                return False
            if not replicas or len(peers) < len(self.sentinel_ports) - 1:
                return False
        return True

    def current_primary_port(self) -> int:
        host, port = self.sentinel_client().execute_command(
            "SENTINEL GET-MASTER-ADDR-BY-NAME", self.SERVICE
        )
        return int(port)

    def failover(self) -> None:
        """SENTINEL FAILOVER: the replica becomes the primary, the old primary its replica."""
        before = self.current_primary_port()

        def promoted() -> bool:
            # A Sentinel only promotes a replica whose INFO it refreshed lately (it asks
            # every 10 s), so a request can be refused or quietly abandoned: ask again.
            try:
                self.sentinel_client().execute_command("SENTINEL FAILOVER", self.SERVICE)
            except redis.ResponseError:
                pass  # NOGOODSLAVE, or INPROG: one is under way
            for _ in range(30):
                if self.current_primary_port() != before:
                    return True
                time.sleep(0.1)
            return False

        wait_for(promoted, timeout=60, message="the Sentinels to promote the replica")
        self.primary, self.replica = self.replica, self.primary
        wait_for(
            lambda: (
                self.replica.client().info("replication").get("master_link_status") == "up"
                and self.replica.client().info("replication").get("master_port")
                == self.primary.port
            ),
            timeout=30,
            message="the old primary to follow the new one",
        )
        wait_for(self._sentinels_know_the_replica, timeout=30, interval=0.2, message="sentinels")

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self.primary.stop()
        self.replica.stop()


def _sentinel_command(conf: Path) -> list[str]:
    # Debian's redis-sentinel package adds the redis-sentinel name; redis-server
    # --sentinel is the same program in the same mode, for machines without it.
    sentinel = shutil.which("redis-sentinel")
    if sentinel:
        return [sentinel, str(conf)]
    return [shutil.which("redis-server") or "redis-server", str(conf), "--sentinel"]
