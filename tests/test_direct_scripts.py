"""A chunk's two scripts sent straight down a pooled connection (core/direct_scripts.py).

The direct call must answer what redis-py's Script answers, and hand every unusual case to Script:
a flushed script cache, a dropped connection, a script error, a Cluster client.
"""

from __future__ import annotations

import uuid

import pytest
import redis as redis_lib
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from chunky_redis.core import direct_scripts
from chunky_redis.core.direct_scripts import (
    DirectScript,
    IdleConnections,
    connections_for,
    pack_evalsha,
)

ECHO = "return {KEYS[1], ARGV[1], ARGV[2]}"
FAILS = "return redis.error_reply('ERR chunky: refused on purpose')"


@pytest.fixture
def client(store):
    return store.redis


def key() -> str:
    return f"chunky-test-direct:{{{uuid.uuid4().hex}}}"


def direct_calls(monkeypatch) -> list[int]:
    """How many times the direct path ran; Script's own calls are not counted."""
    calls: list[int] = []
    original = DirectScript.direct

    def counted(self, keys, args):
        calls.append(1)
        return original(self, keys, args)

    monkeypatch.setattr(DirectScript, "direct", counted)
    return calls


def direct(client, source: str) -> DirectScript:
    """A script as the store makes them (one shelf of idle connections per client)."""
    return DirectScript(client, source, connections_for(client))


def unaccounted(script: DirectScript, client) -> int:
    """Connections out of the pool that are not waiting on the pool's shelf (leaked)."""
    idle = len(script.connections._idle) if script.connections else 0
    return len(client.connection_pool._in_use_connections) - idle


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["", b"", 0],
        ["tok", 30000, -1, 2**70, b"\r\n$3\r\n*", bytes(range(256))],
        ["naïve ☃", "a\r\nb", 1795700578169],
    ],
)
def test_the_packed_command_is_the_one_redis_py_writes(args):
    """Byte for byte what redis-py's own (Python) packer sends for the same call."""
    from redis.connection import PythonRespSerializer

    keys = ["chunky:{u}:upload", "chunky:{u}:lock"]
    expected = PythonRespSerializer(
        6000, redis_lib.connection.Encoder("utf-8", "strict", False).encode
    )
    assert pack_evalsha("ab" * 20, keys, args) == b"".join(
        expected.pack("EVALSHA", "ab" * 20, 2, *keys, *args)
    )


def test_strings_are_packed_in_the_connections_encoding():
    assert (
        pack_evalsha("ab", [], ["é"], "latin-1")
        == b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n0\r\n$1\r\n\xe9\r\n"
    )


@pytest.mark.parametrize("odd", [1.5, True, None, memoryview(b"x")])
def test_other_arguments_are_left_to_redis_py(odd, client):
    """A float, a bool, None, a memoryview: redis-py encodes the float and the memoryview and
    refuses the others, as without us."""
    assert pack_evalsha("ab", [], [odd]) is None
    script = direct(client, ECHO)
    k = key()
    if odd == 1.5 or isinstance(odd, memoryview):
        assert script(keys=[k], args=["a", odd]) == script.script(keys=[k], args=["a", odd])
    else:
        with pytest.raises(redis_lib.DataError):
            script(keys=[k], args=["a", odd])
        with pytest.raises(redis_lib.DataError):
            script.script(keys=[k], args=["a", odd])


def test_one_shelf_per_pool_however_many_stores(client, backend):
    """A store built per Celery task must not keep connections of its own: they would never go
    back to the pool."""
    if backend == "cluster":
        assert connections_for(client) is None
        return
    assert connections_for(client) is connections_for(client)
    other = redis_lib.Redis(connection_pool=redis_lib.ConnectionPool())
    assert connections_for(other) is not connections_for(client)


def test_the_answer_is_the_scripts_whatever_the_client(client, monkeypatch):
    calls = direct_calls(monkeypatch)
    script = direct(client, ECHO)
    k = key()
    assert script(keys=[k], args=["a", 7]) == [k.encode(), b"a", b"7"]
    assert script(keys=[k], args=["a", 7]) == script.script(keys=[k], args=["a", 7])
    if isinstance(client, RedisCluster):
        assert calls == []  # slots and redirections are Script's (and the cluster client's) job
    else:
        assert calls == [1, 1]
        assert unaccounted(script, client) == 0  # every connection is back, or waiting


def test_a_flushed_script_cache_is_reloaded(client, backend):
    if backend == "redis":
        pytest.skip("SCRIPT FLUSH on the shared server would fail other users' scripts")
    script = direct(client, ECHO)
    k = key()
    script(keys=[k], args=["a", "b"])
    client.script_flush()
    assert script(keys=[k], args=["x", "y"]) == [k.encode(), b"x", b"y"]
    if not isinstance(client, RedisCluster):
        assert unaccounted(script, client) == 0


def test_a_script_unknown_to_the_server_is_loaded(client):
    """NOSCRIPT (another server behind the same address, SCRIPT FLUSH): Script loads it."""
    source = ECHO + f" -- {uuid.uuid4().hex}"  # a script no server has seen
    script = direct(client, source)
    k = key()
    assert script(keys=[k], args=["a", "b"]) == [k.encode(), b"a", b"b"]
    assert client.script_exists(script.script.sha) in ([True], True)


def test_a_script_error_is_raised_and_the_next_call_goes_through(client):
    script = direct(client, FAILS)
    with pytest.raises(ResponseError, match="refused on purpose"):
        script(keys=[key()], args=[])
    if not isinstance(client, RedisCluster):
        assert unaccounted(script, client) == 0
    assert direct(client, ECHO)(keys=[key()], args=["still", "fine"])[1:] == [
        b"still",
        b"fine",
    ]


def connection_class(script: DirectScript) -> type:
    """The class of the connections the script uses (after its first call)."""
    assert script.connections is not None
    return type(script.connections._idle[0])


def break_reads(monkeypatch, script, error: Exception, times: int) -> list[tuple[object, object]]:
    """The next ``times`` replies fail with ``error``; returns (connection, its socket) of each."""
    connection_class_ = connection_class(script)
    broken: list[tuple[object, object]] = []
    real_read = connection_class_.read_response

    def read_response(self, *args, **kwargs):
        if len(broken) < times:
            broken.append((self, self._sock))
            raise error
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(connection_class_, "read_response", read_response)
    return broken


def test_a_connection_that_breaks_is_dropped_and_the_call_retried(client, backend, monkeypatch):
    """As redis-py retries its own commands: the bundled clients retry connection errors (the
    embedded fakeredis has no retry policy)."""
    if backend != "redis":
        pytest.skip("the bundled client of a real server, with its retry policy")
    script = direct(client, ECHO)
    k = key()
    script(keys=[k], args=["a", "b"])
    broken = break_reads(monkeypatch, script, redis_lib.ConnectionError("closed by server"), 1)
    assert script(keys=[k], args=["c", "d"]) == [k.encode(), b"c", b"d"]
    monkeypatch.undo()
    connection, socket_when_broken = broken[0]
    assert connection._sock is not socket_when_broken  # dropped: never read again as it was
    assert unaccounted(script, client) == 0


def test_a_reply_that_never_comes_is_not_sent_again(client, backend, monkeypatch):
    """A timeout is never retried (runtime.py): the script may be queued in a frozen Redis and
    would run once per attempt when it resumes."""
    if backend == "cluster":
        pytest.skip("the direct path is not used on a cluster")
    script = direct(client, ECHO)
    k = key()
    script(keys=[k], args=["a", "b"])
    broken = break_reads(monkeypatch, script, redis_lib.TimeoutError("Timeout reading"), 5)
    with pytest.raises(redis_lib.TimeoutError):
        script(keys=[k], args=["c", "d"])
    monkeypatch.undo()
    assert len(broken) == 1
    connection, socket_when_broken = broken[0]
    assert connection._sock is None  # its late reply must not answer someone else's command
    assert unaccounted(script, client) == 0


def test_an_interrupted_call_never_leaves_its_connection_half_read_for_another(
    client, backend, monkeypatch
):
    """A greenlet killed (or a signal) between the command and its reply: the reply would be
    read by the next user of the connection, as the answer to its own command."""
    if backend == "cluster":
        pytest.skip("the direct path is not used on a cluster")
    script = direct(client, ECHO)
    k = key()
    script(keys=[k], args=["a", "b"])

    class Interrupted(BaseException):
        pass

    broken = break_reads(monkeypatch, script, Interrupted(), 1)
    with pytest.raises(Interrupted):
        script(keys=[k], args=["c", "d"])
    monkeypatch.undo()
    connection, _ = broken[0]
    assert connection._sock is None  # disconnected: its reply, still on the way, is never read
    assert unaccounted(script, client) == 0
    assert script(keys=[k], args=["e", "f"]) == [k.encode(), b"e", b"f"]


def test_a_client_pinned_to_one_connection_goes_through_script(backend, monkeypatch):
    if backend != "redis":
        pytest.skip("one real server is enough")
    from tests.support.processes import REAL_REDIS_URL

    pinned = redis_lib.Redis.from_url(REAL_REDIS_URL, single_connection_client=True)
    try:
        calls = direct_calls(monkeypatch)
        k = key()
        assert direct(pinned, ECHO)(keys=[k], args=["a", "b"]) == [k.encode(), b"a", b"b"]
        assert calls == []
    finally:
        pinned.close()


# -- the shelf of idle connections ----------------------------------------------------------------


def test_the_next_call_takes_the_connection_the_last_one_left(client, backend, monkeypatch):
    if backend == "cluster":
        pytest.skip("the direct path is not used on a cluster")
    script = direct(client, ECHO)
    pool = client.connection_pool
    taken: list[object] = []
    real_get = type(pool).get_connection

    def get_connection(self, *args, **kwargs):
        conn = real_get(self, *args, **kwargs)
        taken.append(conn)
        return conn

    monkeypatch.setattr(type(pool), "get_connection", get_connection)
    while script.connections._idle:  # what earlier tests left goes back: start from the pool
        pool.release(script.connections._idle.pop())
    for n in range(5):
        assert script(keys=[key()], args=[n, "x"])[1:] == [str(n).encode(), b"x"]
    assert len(taken) == 1  # from the pool once; then from the shelf
    assert script.connections._idle == taken
    assert unaccounted(script, client) == 0


def test_a_forked_child_never_takes_its_parents_connections(client, backend, monkeypatch):
    """Two processes on one socket would read each other's replies."""
    if backend == "cluster":
        pytest.skip("the direct path is not used on a cluster")
    script = direct(client, ECHO)
    script(keys=[key()], args=["a", "b"])
    parents = list(script.connections._idle)
    real_getpid = direct_scripts.os.getpid
    monkeypatch.setattr(direct_scripts.os, "getpid", lambda: real_getpid() + 1)
    conn = script.connections.take()
    assert conn not in parents
    script.connections.give_back(conn)
    assert script.connections._idle == [conn]
    for parent in parents:  # (a real child's pool starts afresh; this one is shared)
        client.connection_pool.release(parent)


def test_at_most_keep_connections_wait_on_the_shelf_the_rest_go_back_to_the_pool(client, backend):
    if backend == "cluster":
        pytest.skip("the direct path is not used on a cluster")
    shelf = IdleConnections(client.connection_pool, keep=3)
    out = [shelf.take() for _ in range(5)]  # five calls at once
    assert len(set(map(id, out))) == 5
    for conn in out:
        shelf.give_back(conn)
    assert shelf._idle == out[:3]
    assert all(conn in client.connection_pool._available_connections for conn in out[3:])
    for conn in shelf._idle:
        client.connection_pool.release(conn)


def test_a_connection_the_server_closed_while_it_waited_is_replaced(client, backend):
    """Redis restarted, or closed an idle client: the bundled retry policy reconnects."""
    if backend != "redis":
        pytest.skip("needs a real server to close the connection")
    script = direct(client, ECHO)
    k = key()
    script(keys=[k], args=["a", "b"])
    waiting = script.connections._idle[0]
    own_id = None
    for entry in client.client_list():  # find the waiting connection among the server's clients
        if (
            int(entry["port"] if "port" in entry else entry["addr"].rsplit(":", 1)[1])
            == (waiting._sock.getsockname()[1])
        ):
            own_id = entry["id"]
    assert own_id is not None
    client.client_kill_filter(_id=own_id)
    assert script(keys=[k], args=["c", "d"]) == [k.encode(), b"c", b"d"]
    assert unaccounted(script, client) == 0


@pytest.mark.parametrize(("cap", "kept"), [(2**31, 8), (10, 5), (1, 0)])
def test_a_capped_pool_keeps_half_of_its_connections_for_other_commands(cap, kept):
    """A shelf that held every connection of a capped pool would leave other commands none (a
    BlockingConnectionPool would wait for one forever)."""
    assert IdleConnections(redis_lib.ConnectionPool(max_connections=cap)).keep == kept
