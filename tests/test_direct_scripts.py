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

from chunky_redis.core.direct_scripts import DirectScript

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

    def counted(self, pool, keys, args):
        calls.append(1)
        return original(self, pool, keys, args)

    monkeypatch.setattr(DirectScript, "direct", counted)
    return calls


def in_use(client) -> int:
    return len(client.connection_pool._in_use_connections)


def test_the_answer_is_the_scripts_whatever_the_client(client, monkeypatch):
    calls = direct_calls(monkeypatch)
    script = DirectScript(client, ECHO)
    k = key()
    assert script(keys=[k], args=["a", 7]) == [k.encode(), b"a", b"7"]
    assert script(keys=[k], args=["a", 7]) == script.script(keys=[k], args=["a", 7])
    if isinstance(client, RedisCluster):
        assert calls == []  # slots and redirections are Script's (and the cluster client's) job
    else:
        assert calls == [1, 1]
        assert in_use(client) == 0  # every connection went back to the pool


def test_a_flushed_script_cache_is_reloaded(client, backend):
    if backend == "redis":
        pytest.skip("SCRIPT FLUSH on the shared server would fail other users' scripts")
    script = DirectScript(client, ECHO)
    k = key()
    script(keys=[k], args=["a", "b"])
    client.script_flush()
    assert script(keys=[k], args=["x", "y"]) == [k.encode(), b"x", b"y"]
    if not isinstance(client, RedisCluster):
        assert in_use(client) == 0


def test_a_script_unknown_to_the_server_is_loaded(client):
    """NOSCRIPT (another server behind the same address, SCRIPT FLUSH): Script loads it."""
    source = ECHO + f" -- {uuid.uuid4().hex}"  # a script no server has seen
    script = DirectScript(client, source)
    k = key()
    assert script(keys=[k], args=["a", "b"]) == [k.encode(), b"a", b"b"]
    assert client.script_exists(script.script.sha) in ([True], True)


def test_a_script_error_is_raised_and_the_next_call_goes_through(client):
    script = DirectScript(client, FAILS)
    with pytest.raises(ResponseError, match="refused on purpose"):
        script(keys=[key()], args=[])
    if not isinstance(client, RedisCluster):
        assert in_use(client) == 0
    assert DirectScript(client, ECHO)(keys=[key()], args=["still", "fine"])[1:] == [
        b"still",
        b"fine",
    ]


def break_reads(monkeypatch, client, error: Exception, times: int) -> list[tuple[object, object]]:
    """The next ``times`` replies fail with ``error``; returns (connection, its socket) of each."""
    connection_class = type(client.connection_pool._available_connections[0])
    broken: list[tuple[object, object]] = []
    real_read = connection_class.read_response

    def read_response(self, *args, **kwargs):
        if len(broken) < times:
            broken.append((self, self._sock))
            raise error
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(connection_class, "read_response", read_response)
    return broken


def test_a_connection_that_breaks_is_dropped_and_the_call_retried(client, backend, monkeypatch):
    """As redis-py retries its own commands: the bundled clients retry connection errors (the
    embedded fakeredis has no retry policy)."""
    if backend != "redis":
        pytest.skip("the bundled client of a real server, with its retry policy")
    script = DirectScript(client, ECHO)
    k = key()
    script(keys=[k], args=["a", "b"])
    broken = break_reads(monkeypatch, client, redis_lib.ConnectionError("closed by server"), 1)
    assert script(keys=[k], args=["c", "d"]) == [k.encode(), b"c", b"d"]
    monkeypatch.undo()
    connection, socket_when_broken = broken[0]
    assert connection._sock is not socket_when_broken  # dropped: never read again as it was
    assert in_use(client) == 0


def test_a_reply_that_never_comes_is_not_sent_again(client, backend, monkeypatch):
    """A timeout is never retried (runtime.py): the script may be queued in a frozen Redis and
    would run once per attempt when it resumes."""
    if backend == "cluster":
        pytest.skip("the direct path is not used on a cluster")
    script = DirectScript(client, ECHO)
    k = key()
    script(keys=[k], args=["a", "b"])
    broken = break_reads(monkeypatch, client, redis_lib.TimeoutError("Timeout reading"), 5)
    with pytest.raises(redis_lib.TimeoutError):
        script(keys=[k], args=["c", "d"])
    monkeypatch.undo()
    assert len(broken) == 1
    connection, socket_when_broken = broken[0]
    assert connection._sock is None  # its late reply must not answer someone else's command
    assert in_use(client) == 0


def test_an_interrupted_call_never_returns_its_connection_to_the_pool_half_read(
    client, backend, monkeypatch
):
    """A greenlet killed (or a signal) between the command and its reply: the reply would be
    read by the next user of the connection, as the answer to its own command."""
    if backend == "cluster":
        pytest.skip("the direct path is not used on a cluster")
    script = DirectScript(client, ECHO)
    k = key()
    script(keys=[k], args=["a", "b"])
    connection_class = type(client.connection_pool._available_connections[0])

    class Interrupted(BaseException):
        pass

    def interrupted(self, *args, **kwargs):
        raise Interrupted()

    disconnected: list[int] = []
    real_disconnect = connection_class.disconnect

    def disconnect(self, *args, **kwargs):
        disconnected.append(1)
        return real_disconnect(self, *args, **kwargs)

    monkeypatch.setattr(connection_class, "read_response", interrupted)
    monkeypatch.setattr(connection_class, "disconnect", disconnect)
    with pytest.raises(Interrupted):
        script(keys=[k], args=["c", "d"])
    monkeypatch.undo()
    assert disconnected
    assert in_use(client) == 0
    assert script(keys=[k], args=["e", "f"]) == [k.encode(), b"e", b"f"]


def test_a_client_pinned_to_one_connection_goes_through_script(backend, monkeypatch):
    if backend != "redis":
        pytest.skip("one real server is enough")
    from tests.support.processes import REAL_REDIS_URL

    pinned = redis_lib.Redis.from_url(REAL_REDIS_URL, single_connection_client=True)
    try:
        calls = direct_calls(monkeypatch)
        k = key()
        assert DirectScript(pinned, ECHO)(keys=[k], args=["a", "b"]) == [k.encode(), b"a", b"b"]
        assert calls == []
    finally:
        pinned.close()
