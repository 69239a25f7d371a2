"""A private 3-primary Redis Cluster (one replica each) on free loopback ports, for tests.

Started once per test session (tests/conftest.py), stopped at its end. Tests fail its
primaries over, kill them and migrate slots; every such step waits until the cluster
is healthy again.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import redis

from tests.support.processes import wait_for
from tests.support.redis_servers import HOST, RedisNode, free_ports


class LocalCluster:
    """Three primaries, each with one replica (so that every slot can fail over)."""

    def __init__(self, root: Path, primaries: int = 3):
        ports = free_ports(primaries * 4)  # a client port and a cluster bus port per node
        self.nodes = [
            RedisNode(
                root,
                ports[2 * i],
                [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    str(ports[2 * i + 1]),
                    "--cluster-config-file",
                    f"nodes-{ports[2 * i]}.conf",
                    "--cluster-node-timeout",
                    "1500",
                    # any replica may be promoted, however long its link was down
                    "--cluster-replica-validity-factor",
                    "0",
                ],
            )  # fmt: skip
            for i in range(primaries * 2)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{HOST}:{n.port}" for n in self.nodes[:3])

    def start(self) -> LocalCluster:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "--cluster", "create",
                *(f"{HOST}:{n.port}" for n in self.nodes),
                "--cluster-replicas", "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        self.wait_healthy()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    # -- topology ------------------------------------------------------------
    def node_by_port(self, port: int) -> RedisNode:
        return next(n for n in self.nodes if n.port == port)

    def _view(self) -> list[dict]:
        """CLUSTER NODES as seen by a live node: id, port, role, master id, flags, slots."""
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                text = node.raw("CLUSTER", "NODES").decode()
            except redis.RedisError:
                continue
            rows = []
            for line in text.strip().splitlines():
                fields = line.split()
                rows.append(
                    {
                        "id": fields[0],
                        "port": int(fields[1].split("@")[0].rsplit(":", 1)[1]),
                        "flags": fields[2].split(","),
                        "master": fields[3],
                        "link": fields[7],
                        "slots": fields[8:],
                    }
                )
            return rows
        raise RuntimeError("no cluster node answers")

    def node_id(self, node: RedisNode) -> str:
        return node.client().execute_command("CLUSTER MYID").decode()

    def owner_of(self, slot: int) -> RedisNode:
        for row in self._view():
            if "master" not in row["flags"] or "fail" in row["flags"]:
                continue
            for item in row["slots"]:
                if item.startswith("["):
                    continue  # a migrating or importing marker, not ownership
                low, _, high = item.partition("-")
                if int(low) <= slot <= int(high or low):
                    return self.node_by_port(row["port"])
        raise RuntimeError(f"no primary owns slot {slot}")

    def replica_of(self, primary: RedisNode) -> RedisNode:
        primary_id = self.node_id(primary)
        for row in self._view():
            if row["master"] == primary_id and "fail" not in row["flags"]:
                return self.node_by_port(row["port"])
        raise RuntimeError(f"the primary on {primary.port} has no replica")

    def primaries(self) -> list[RedisNode]:
        return [
            self.node_by_port(r["port"])
            for r in self._view()
            if "master" in r["flags"] and "fail" not in r["flags"] and r["slots"]
        ]

    def wait_healthy(self, timeout: float = 60) -> None:
        """Every live node says cluster_state:ok, every primary has a replica in sync."""

        def healthy() -> bool:
            for node in self.nodes:
                if node.proc is None or node.proc.poll() is not None:
                    return False
                try:
                    info = node.raw("CLUSTER", "INFO")
                    replication = node.client().info("replication")
                except redis.RedisError:
                    return False
                if _cluster_state(info) != "ok":
                    return False
                if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                    return False
                if replication["role"] == "master" and replication.get("connected_slaves", 0) < 1:
                    return False
            return True

        wait_for(healthy, timeout=timeout, interval=0.2, message="a healthy cluster")

    # -- what the tests do to it --------------------------------------------
    def failover(self, primary: RedisNode) -> RedisNode:
        """CLUSTER FAILOVER on the primary's replica: the replica takes over, nothing is lost."""
        replica = self.replica_of(primary)
        replica.client().execute_command("CLUSTER FAILOVER")
        wait_for(
            lambda: replica.client().info("replication")["role"] == "master",
            timeout=30,
            message="the replica to take over",
        )
        self.wait_healthy()
        return replica

    def kill_primary(self, primary: RedisNode) -> RedisNode:
        """SIGKILL the primary; its replica is elected; the dead node comes back as a replica."""
        replica = self.replica_of(primary)
        primary.kill()
        wait_for(
            lambda: replica.client().info("replication")["role"] == "master",
            timeout=30,
            message="the replica to be elected",
        )
        primary.start()  # its nodes.conf makes it rejoin, as a replica of the new primary
        self.wait_healthy()
        return replica

    def migrate_slot(self, slot: int, target: RedisNode, between_steps=lambda step: None) -> None:
        """Move one slot with its keys, the way redis-cli --cluster reshard does, step by step.

        ``between_steps(name)`` runs after each step, so that a test can send requests
        while the slot is half migrated.
        """
        source = self.owner_of(slot)
        if source is target:
            raise ValueError("the target already owns the slot")
        source_id, target_id = self.node_id(source), self.node_id(target)
        target.client().execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        source.client().execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        between_steps("migrating")
        while keys := source.client().execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
            source.client().execute_command(
                "MIGRATE", HOST, target.port, "", 0, 5000, "KEYS", *keys
            )
            between_steps("keys moved")
        for node in (target, source, *self.primaries()):
            node.client().execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        between_steps("done")
        self.wait_healthy()


def _cluster_state(info: bytes) -> str:
    for line in info.decode().splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return ""
