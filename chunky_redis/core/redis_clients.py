"""Redis clients from one URL: a single server, a Redis Cluster, or a primary found through Sentinel.

No Django here. The schemes:

- ``redis://``, ``rediss://``, ``unix://``: one server (redis-py's own URL parser);
- ``redis+cluster://[user:password@]host:port[,host:port...][/0][?option=value...]``: a Redis
  Cluster; the nodes listed are only seeds, the client learns the rest of the cluster from them;
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db][?option=value...]``:
  the primary that the Sentinels at those addresses name ``service``, followed across failovers.

``rediss+cluster`` and ``rediss+sentinel`` use TLS. Options in the query string are redis-py's
connection options (``socket_timeout=5``...); for Sentinel, options named ``sentinel_<name>``
go to the connections to the Sentinels themselves (``sentinel_password=...``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis as redis_lib
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import URL_QUERY_ARGUMENT_PARSERS
from redis.exceptions import AskError, MovedError, TryAgainError
from redis.sentinel import Sentinel

SINGLE, CLUSTER, SENTINEL = "single", "cluster", "sentinel"
_KINDS = {
    "redis+cluster": (CLUSTER, False),
    "rediss+cluster": (CLUSTER, True),
    "redis+sentinel": (SENTINEL, False),
    "rediss+sentinel": (SENTINEL, True),
}
_DEFAULT_PORTS = {CLUSTER: 6379, SENTINEL: 26379}

AnyRedis = redis_lib.Redis | RedisCluster


@dataclass(frozen=True)
class RedisLocation:
    """What a URL names: the kind of deployment, its seed addresses and connection options."""

    kind: str
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""  # Sentinel: the primary's service name
    db: int = 0
    options: dict[str, Any] = field(default_factory=dict)


def parse(url: str) -> RedisLocation:
    """Read a Redis URL; a ValueError says what is wrong with it."""
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        return RedisLocation(SINGLE, options=redis_lib.connection.parse_url(url))
    if scheme not in _KINDS:
        raise ValueError(
            f"unknown scheme {scheme!r}: use redis://, rediss://, unix://, "
            "redis+cluster:// or redis+sentinel:// (rediss+... for TLS)"
        )
    kind, tls = _KINDS[scheme]
    parts = urlsplit(url)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    options = _query_options(parts.query)
    if userinfo:
        username, _, password = userinfo.partition(":")
        if username:
            options["username"] = unquote(username)
        if password:
            options["password"] = unquote(password)
    if tls:
        options["ssl"] = True
    nodes = tuple(_address(item, _DEFAULT_PORTS[kind]) for item in hostlist.split(","))
    path = [unquote(p) for p in parts.path.split("/") if p]
    if kind == CLUSTER:
        if path not in ([], ["0"]):
            raise ValueError("Redis Cluster has only database 0: leave the path empty or use /0")
        return RedisLocation(CLUSTER, nodes, options=options)
    if not path or len(path) > 2:
        raise ValueError(
            "name the Sentinel service in the path: redis+sentinel://HOST:PORT/NAME[/DB]"
        )
    db = _integer(path[1], "database") if len(path) == 2 else 0
    return RedisLocation(SENTINEL, nodes, service=path[0], db=db, options=options)


def client_from_url(url: str, **options: Any) -> AnyRedis:
    """A client for the URL; ``options`` are redis-py connection options (the URL's win)."""
    where = parse(url)
    if where.kind == SINGLE:
        return redis_lib.Redis.from_url(url, **options)
    merged = {**options, **where.options}
    if where.kind == CLUSTER:
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in where.nodes], **merged)
    sentinel_options = {
        name.removeprefix("sentinel_"): merged.pop(name)
        for name in list(merged)
        if name.startswith("sentinel_")
    }
    if "socket_timeout" in merged:
        sentinel_options.setdefault("socket_timeout", merged["socket_timeout"])
    sentinel = Sentinel(list(where.nodes), sentinel_kwargs=sentinel_options)
    primary: redis_lib.Redis = sentinel.master_for(where.service, db=where.db, **merged)
    return primary


def celery_broker_for(url: str) -> tuple[str, dict[str, Any]]:
    """Celery's broker URL and transport options for the Redis that holds upload state.

    A Sentinel URL becomes kombu's ``sentinel://`` transport (same Sentinels, same
    service and db). Celery cannot use Redis Cluster as its broker (kombu's Redis
    transport needs one keyspace for its queues and their bookkeeping): ValueError.
    """
    where = parse(url)
    if where.kind == SINGLE:
        return url, {}
    if where.kind == CLUSTER:
        raise ValueError(
            "Celery cannot use Redis Cluster as its broker: give it its own broker "
            "(RabbitMQ, a single Redis, or a Sentinel-managed one)"
        )
    password = where.options.get("password", "")
    auth = f":{quote(password, safe='')}@" if password else ""
    broker = ";".join(f"sentinel://{auth}{_netloc(h, p)}/{where.db}" for h, p in where.nodes)
    options: dict[str, Any] = {"master_name": where.service}
    sentinel_password = where.options.get("sentinel_password")
    if sentinel_password:
        options["sentinel_kwargs"] = {"password": sentinel_password}
    return broker, options


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_cluster(client: Any) -> bool:
    return isinstance(client, RedisCluster)


def call_and_wait(
    client: AnyRedis, script: Any, keys: list[str], args: list[Any], replicas: int, timeout_ms: int
) -> tuple[Any, int]:
    """Run a registered script, then WAIT for ``replicas``; returns (its result, replicas that acked).

    WAIT counts the writes of the connection it is sent on, so both commands go
    down one connection, pipelined: one round trip, as without WAIT.
    """
    if not isinstance(client, RedisCluster):
        return _script_then_wait(client, script, keys, args, replicas, timeout_ms)
    # A cluster client spreads commands over its pools, and its WAIT goes to every
    # primary: talk to the node that owns the keys' slot directly, and follow the
    # redirections of a slot being migrated or failed over the way the client would.
    slot, asking = client.keyslot(keys[0]), None
    for attempt in range(_CLUSTER_ATTEMPTS):
        node = asking or client.nodes_manager.get_node_from_slot(slot)
        try:
            return _script_then_wait(
                client.get_redis_connection(node),
                script,
                keys,
                args,
                replicas,
                timeout_ms,
                asking=asking is not None,
            )
        except MovedError as e:  # the slot has a new owner (a finished migration, a failover)
            client.nodes_manager.move_slot(e)
            asking = None
        except AskError as e:  # the slot is migrating and the keys are on the target already
            asking = client.get_node(host=e.host, port=e.port)
        except (TryAgainError, redis_lib.ConnectionError, redis_lib.TimeoutError):
            if attempt == _CLUSTER_ATTEMPTS - 1:
                raise
            # keys split by a migration, or a primary gone: the cluster settles in moments
            time.sleep(0.05 * 2**attempt)
            client.nodes_manager.initialize()
            asking = None
    raise redis_lib.ConnectionError("the cluster kept redirecting the write")


_CLUSTER_ATTEMPTS = 6


def _script_then_wait(
    client: redis_lib.Redis,
    script: Any,
    keys: list[str],
    args: list[Any],
    replicas: int,
    timeout_ms: int,
    *,
    asking: bool = False,
) -> tuple[Any, int]:
    pipe = client.pipeline(transaction=False)
    if asking:
        pipe.execute_command("ASKING")
    script(keys=keys, args=args, client=pipe)
    pipe.execute_command("WAIT", replicas, timeout_ms)
    *_, result, acked = pipe.execute()
    return result, int(acked)


def _query_options(query: str) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name, values in parse_qs(query).items():
        # redis-py types the parsers as object; each is a converter from the query's text.
        parser = cast("Callable[[str], Any] | None", URL_QUERY_ARGUMENT_PARSERS.get(name))
        try:
            options[name] = parser(values[0]) if parser else values[0]
        except (TypeError, ValueError):
            raise ValueError(f"invalid value for {name!r}: {values[0]!r}") from None
    return options


def _address(item: str, default_port: int) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
    if not host:
        raise ValueError(f"missing host in {item!r}")
    return unquote(host), _integer(port, "port") if port else default_port


def _integer(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"the {what} must be a number, not {text!r}") from None
    if value < 0:
        raise ValueError(f"the {what} must not be negative: {value}")
    return value
