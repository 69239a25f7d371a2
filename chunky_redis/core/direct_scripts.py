"""The two scripts every chunk runs (ACQUIRE, COMMIT), sent straight down a pooled connection.

redis-py's ``Script`` goes through ``evalsha``, ``execute_command``, a retry wrapper, argument
checks and observability hooks before the command reaches the socket: about 40 µs of a core per
call in a gunicorn gevent worker, some 8% of a 64 KiB chunk request (docs/performance.md). Here
the call takes a connection from the client's own pool, writes EVALSHA and reads the
reply, as redis-py itself does underneath, with the connection's own retry policy (the bundled
clients retry a broken connection, never a timeout: runtime.py). The rest goes through ``Script``:

- a Redis Cluster client (its slot routing and redirections), or a client pinned to one connection;
- a script the server does not know (NOSCRIPT: a new server, or SCRIPT FLUSH), which it loads.
"""

from __future__ import annotations

from typing import Any

import redis as redis_lib
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class DirectScript:
    """Call like a registered ``Script``: ``script(keys=[...], args=[...])``."""

    def __init__(self, client: Any, source: str):
        self.script: Script = client.register_script(source)
        plain = isinstance(client, redis_lib.Redis) and client.connection is None
        self.pool = client.connection_pool if plain else None

    def __call__(self, *, keys: list[Any], args: list[Any]) -> Any:
        if self.pool is None:
            return self.script(keys=keys, args=args)
        return self.direct(self.pool, keys, args)

    def direct(self, pool: Any, keys: list[Any], args: list[Any]) -> Any:
        """EVALSHA down one pooled connection, retried as the client's own commands are."""
        conn = pool.get_connection()
        try:
            return conn.retry.call_with_retry(
                lambda: self._evalsha(conn, keys, args),
                lambda _error: conn.disconnect(),  # what redis-py does before its retries
            )
        except NoScriptError:
            pass  # read in full: the connection is still good; Script loads the script below
        except BaseException:  # a script's error, a reply half read (a greenlet killed): dropped
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        return self.script(keys=keys, args=args)

    def _evalsha(self, conn: Any, keys: list[Any], args: list[Any]) -> Any:
        conn.send_command("EVALSHA", self.script.sha, len(keys), *keys, *args)
        return conn.read_response()
