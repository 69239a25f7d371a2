"""What a chunk costs Redis, pinned: the README's capacity model ("Scaling out") rests on it.

A later chunk is two round trips (the ACQUIRE script, the COMMIT script) and nothing else; a
change that adds one (a read before the lock, an index update per chunk) fails here, and then
the README's model and ``bench/results/redis_cost.json`` (``python -m bench.rediscost``) have to
be brought up to date with it.
"""

from __future__ import annotations

import pytest
import redis
from django.test import Client

from bench.rediscost import counting, phases, private_redis

pytestmark = pytest.mark.django_db

CHUNK = 65536


def test_counting_sees_single_commands_and_pipelines(chunky) -> None:
    from chunky_redis import runtime

    client = runtime.get_redis()
    with counting() as calls:
        client.exists("chunky-test-nothing")
        pipe = client.pipeline(transaction=False)
        pipe.exists("a")
        pipe.exists("b")
        pipe.execute()
    assert calls.round_trips == 2
    assert calls.commands == {"EXISTS": 3}


def test_round_trips_per_step(chunky) -> None:
    client = Client()
    phases(client, None, 2, CHUNK, server_stats=False)  # loads the scripts (NOSCRIPT once)
    steps = phases(client, None, 5, CHUNK, server_stats=False)
    assert [c["by_name"] for c in steps["chunk"]] == [{"EVALSHA": 2}] * 4
    assert [c["round_trips"] for c in steps["chunk"]] == [2] * 4
    assert steps["first_chunk"]["round_trips"] == 3  # CREATE script, new-upload lock, expiry index
    assert steps["status"]["round_trips"] == 1
    # POST (lock, mark processing, indexes, quota release) + finalization (eager here), whose
    # winner reads the finished record back and records its signals as sent (2 of the 13)
    assert steps["completion"]["round_trips"] == 13


def test_commands_redis_runs_per_chunk(tmp_path, settings) -> None:
    """On a private server (INFO counters of the shared one mix in everyone's traffic)."""
    with private_redis() as url:
        settings.CHUNKY_REDIS_REDIS_URL = url
        settings.CHUNKY_REDIS_KEY_PREFIX = "cost"
        settings.CHUNKY_REDIS_UPLOAD_DIR = str(tmp_path / "chunks")
        settings.MEDIA_ROOT = str(tmp_path / "media")
        settings.CHUNKY_REDIS_ALLOW_ANONYMOUS = True
        server = redis.Redis.from_url(url)
        client = Client()
        phases(client, server, 2, CHUNK)
        steps = phases(client, server, 4, CHUNK)
        server.close()
    for chunk in steps["chunk"]:
        # ACQUIRE: TIME, HGETALL, SET NX; COMMIT: GET, DEL, HMGET, HSET, PEXPIREAT
        assert chunk["server"]["by_name"] == {
            "evalsha": 2,
            "time": 1,
            "hgetall": 1,
            "set": 1,
            "get": 1,
            "del": 1,
            "hmget": 1,
            "hset": 1,
            "pexpireat": 1,
        }


def test_the_counted_upload_is_whole(chunky) -> None:
    """The counts above come from uploads that really complete with the right bytes."""
    from chunky_redis import runtime

    client = Client()
    steps = phases(client, None, 3, CHUNK, server_stats=False)
    upload = runtime.get_store().get(steps["upload_id"])
    assert upload is not None and upload.status == "complete"
    assert upload.checksum == steps["md5"]  # finalization verified the file against it
