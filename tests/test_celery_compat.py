"""chunky_redis.processing.celery_compat: a detached kombu Redis transport gives a connection error.

The live version of this (a worker under Redis restarts) is in tests/test_outages.py; this
is the step that crashed the worker, on its own.
"""

from __future__ import annotations

import pytest
import redis
from kombu import Connection

from chunky_redis.processing.celery_compat import patch_kombu_redis
from tests.support.processes import REAL_REDIS_URL


def test_the_bundled_celery_app_applies_it():
    from kombu.transport import redis as transport

    import tasks  # noqa: F401  (importing the app patches kombu)

    assert getattr(transport.Channel._connparams, "_chunky_redis_patched", False)


def test_a_channel_of_a_closed_connection_raises_a_connection_error():
    assert patch_kombu_redis() and patch_kombu_redis()  # idempotent
    with Connection(REAL_REDIS_URL) as connection:
        channel = connection.channel()
        assert channel._connparams()["db"] == 15  # untouched while the connection is open
        errors = connection.connection_errors
        # What Connection.collect() does to the transport, as Celery calls it on a lost broker.
        transport, connection._transport = connection._transport, None
        transport.client = None
        channel._pool = None
        with pytest.raises(errors) as caught:
            _ = channel.pool  # a new pool: the restore of an unacknowledged message needs one
        assert isinstance(caught.value, redis.exceptions.ConnectionError)


def test_beat_touches_its_heartbeat_file_at_every_tick(tmp_path, monkeypatch):
    from tasks.celery import HeartbeatScheduler, app

    heartbeat = tmp_path / "beat-heartbeat"
    monkeypatch.setenv("CELERY_BEAT_HEARTBEAT_FILE", str(heartbeat))
    assert app.conf.beat_scheduler is HeartbeatScheduler
    scheduler = HeartbeatScheduler(app=app, schedule_filename=str(tmp_path / "schedule"), lazy=True)
    scheduler.setup_schedule()
    scheduler.tick()
    assert heartbeat.exists()
    scheduler.close()
