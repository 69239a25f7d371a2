"""The two scripts every chunk runs (ACQUIRE, COMMIT), sent straight down a connection.

redis-py's ``Script`` goes through ``evalsha``, ``execute_command``, a retry wrapper, argument
checks and observability hooks before the command reaches the socket: about 40 µs of a core per
call in a gunicorn gevent worker, some 8% of a 64 KiB chunk request (docs/performance.md). Here
the call takes a connection the last call left (``IdleConnections``; the first time, one of the
client's pool), writes EVALSHA (packed by ``pack_evalsha``) and reads the reply, as redis-py
itself does underneath, with the connection's own retry policy (the bundled clients retry a
broken connection, never a timeout: runtime.py). The rest goes through ``Script``:

- a Redis Cluster client (its slot routing and redirections), or a client pinned to one connection;
- a script the server does not know (NOSCRIPT: a new server, or SCRIPT FLUSH), which it loads.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

import redis as redis_lib
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class IdleConnections:
    """Connections of one pool kept, between chunk scripts, for the next script to take.

    redis-py's pool checks every connection it hands out for unread data (a poll of the socket)
    and takes and releases its lock on both sides: about 9% of a 64 KiB chunk request's
    instructions under gevent (docs/performance.md). A connection comes back here only once its
    reply was read in full; one that failed in any way is dropped (and returned to the pool
    disconnected), so a late reply can never answer another command. A connection the server
    closed while it sat here fails on its next command, which the client's retry policy repeats
    on a new connection (the bundled clients retry connection errors: runtime.py). At most
    ``keep`` wait here, and never more than half a capped pool; the rest go back to the pool. A
    forked child never takes its parent's.
    """

    def __init__(self, pool: Any, keep: int = 8):
        self.pool = pool
        # A pool with a cap (a host's own client, a BlockingConnectionPool) keeps at least half of
        # it for everyone else: a shelf holding all of them would starve, or block, other commands.
        self.keep = min(keep, getattr(pool, "max_connections", keep) // 2)
        self._idle: list[Any] = []
        self._pid = os.getpid()

    def take(self) -> Any:
        if self._pid != os.getpid():  # a forked child: those sockets are its parent's
            self._idle, self._pid = [], os.getpid()
        try:
            return self._idle.pop()  # atomic: safe between threads, and greenlets never yield here
        except IndexError:
            return self.pool.get_connection()

    def give_back(self, conn: Any) -> None:
        if len(self._idle) < self.keep and self._pid == os.getpid():
            self._idle.append(conn)
        else:
            self.pool.release(conn)

    def drop(self, conn: Any) -> None:
        conn.disconnect()
        self.pool.release(conn)


class DirectScript:
    """Call like a registered ``Script``: ``script(keys=[...], args=[...])``, or with ``client=``
    (a pipeline, another client), which ``Script`` itself runs on."""

    def __init__(self, client: Any, source: str, connections: IdleConnections | None = None):
        """``connections``: the shelf this script shares with the others of ``client``'s pool
        (``connections_for(client)``); None for a Cluster client or one pinned to a connection."""
        self.script: Script = client.register_script(source)
        self.connections = connections

    def __call__(self, *, keys: list[Any], args: list[Any], client: Any = None) -> Any:
        if self.connections is None or client is not None:
            return self.script(keys=keys, args=args, client=client)
        return self.direct(keys, args)

    def direct(self, keys: list[Any], args: list[Any]) -> Any:
        """EVALSHA down one connection, retried as the client's own commands are."""
        connections = self.connections
        assert connections is not None  # (only __call__ calls it, with a shelf)
        conn = connections.take()
        try:
            reply = conn.retry.call_with_retry(
                lambda: self._evalsha(conn, keys, args),
                lambda _error: conn.disconnect(),  # what redis-py does before its retries
            )
        except NoScriptError:
            connections.give_back(conn)  # read in full: the connection is still good
            return self.script(keys=keys, args=args)  # which loads the script
        except BaseException:  # a script's error, a reply half read (a greenlet killed): dropped
            connections.drop(conn)
            raise
        connections.give_back(conn)
        return reply

    def _evalsha(self, conn: Any, keys: list[Any], args: list[Any]) -> Any:
        encoder = conn.encoder
        packed = pack_evalsha(
            self.script.sha, keys, args, encoder.encoding, encoder.encoding_errors
        )
        if packed is None:  # an argument redis-py's own packer must encode (or refuse)
            conn.send_command("EVALSHA", self.script.sha, len(keys), *keys, *args)
        else:
            conn.send_packed_command([packed])  # a list of buffers, as redis-py's packer gives
        return conn.read_response()


def pack_evalsha(
    sha: str, keys: list[Any], args: list[Any], encoding: str = "utf-8", errors: str = "strict"
) -> bytes | None:
    """EVALSHA as the RESP array redis-py's packer would write, or None for an argument that is
    not bytes, str or int (a float, a bool, None): those are left to redis-py.

    redis-py's packer, general as it must be, took 10-20 µs for ACQUIRE and about 13 µs for COMMIT
    here (their strings, numbers and checksum states); this takes 4.5-8 and 6-7 µs.
    """
    items = [b"EVALSHA", sha.encode(), b"%d" % len(keys)]
    for value in (*keys, *args):
        kind = type(value)  # exact types: a bool is an int subclass that redis-py refuses
        if kind is bytes:
            items.append(value)
        elif kind is str:
            items.append(value.encode(encoding, errors))
        elif kind is int:
            items.append(b"%d" % value)
        else:
            return None
    out = [b"*%d\r\n" % len(items)]
    for item in items:
        out += (b"$%d\r\n" % len(item), item, b"\r\n")
    return b"".join(out)


def connections_for(client: Any) -> IdleConnections | None:
    """The shelf of ``client``'s pool, one per pool however many stores use it (a store built per
    task must not keep connections of its own); None where the direct path does not apply: a
    Redis Cluster client, whose commands go by slot, or a client pinned to one connection."""
    if not (isinstance(client, redis_lib.Redis) and client.connection is None):
        return None
    pool = client.connection_pool
    with _shelves_lock:
        shelf = _shelves.get(pool)
        if shelf is None:
            shelf = _shelves[pool] = IdleConnections(pool)
    return shelf


_shelves: weakref.WeakKeyDictionary[Any, IdleConnections] = weakref.WeakKeyDictionary()
_shelves_lock = threading.Lock()
