"""Crashes between writing a chunk and recording it, and their retries."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest

from chunky_redis import runtime
from chunky_redis.core.errors import TooLarge
from chunky_redis.core.store import UploadStore
from chunky_redis.core.uploads import ChunkSession
from tests.support.api import ClientApi, LiveApi
from tests.support.chunk_views import FileChunks, chunk_view, final_bytes, use_s3_chunks
from tests.support.processes import SiteProcess, WorkerProcess, live_env, wait_for


class SimulatedCrash(BaseException):
    """Stands for the process dying: nothing after it runs, not even cleanup."""


@pytest.fixture(params=["filesystem", pytest.param("s3", marks=pytest.mark.live)])
def chunks(request, chunky):
    """The chunk storage under test: the shared directory, or S3 (moto, parts of 64 KiB)."""
    if request.param == "s3":
        use_s3_chunks(chunky, request.getfixturevalue("local_s3_chunks"))
    return chunk_view(chunky)


def test_write_done_but_state_not_updated_then_retry(chunky, chunks, monkeypatch):
    # The dead request's lock lapses quickly; a live one renews it every third of this, which
    # S3 requests on a loaded machine can outlast at 0.2 s.
    chunky.CHUNKY_REDIS_LOCK_TIMEOUT = 0.2 if isinstance(chunks, FileChunks) else 1.0
    api = ClientApi()
    data = os.urandom(3 * 100_000)
    total = len(data)
    upload_id = api.put("/upload/", data[:100_000], content_range=f"bytes 0-99999/{total}").data[
        "upload_id"
    ]

    real_commit = UploadStore.commit

    def crash(self, *args, **kwargs):
        raise SimulatedCrash()

    monkeypatch.setattr(UploadStore, "commit", crash)
    monkeypatch.setattr(
        ChunkSession, "abort", lambda self: None
    )  # a dead process cleans nothing up
    garbage = os.urandom(100_000)  # the crashed attempt even carried different bytes
    with pytest.raises(SimulatedCrash):
        api.put(f"/upload/{upload_id}/", garbage, content_range=f"bytes 100000-199999/{total}")
    assert chunks.holds(upload_id, data[:100_000] + garbage)  # the bytes did land ...
    assert api.get(f"/upload/{upload_id}/").data["offset"] == 100_000  # ... but were never recorded
    monkeypatch.setattr(UploadStore, "commit", real_commit)
    monkeypatch.undo()

    def retry():
        reply = api.put(
            f"/upload/{upload_id}/",
            data[100_000:200_000],
            content_range=f"bytes 100000-199999/{total}",
        )
        assert reply.status in (200, 409), reply.body  # 409 while the dead request's lock lives
        return reply.status == 200

    wait_for(retry, timeout=15, interval=0.05, message="the retry to be accepted")
    assert (
        api.put(
            f"/upload/{upload_id}/", data[200_000:], content_range=f"bytes 200000-299999/{total}"
        ).status
        == 200
    )
    assert chunks.holds(upload_id, data)
    assert (
        api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()}).status == 200
    )
    done = api.get(f"/upload/{upload_id}/").data
    assert done["status"] == "complete"
    assert final_bytes(done["final_name"]) == data


@pytest.mark.parametrize("dead_write", [9000, 200_000])
def test_stale_bytes_beyond_the_offset_are_overwritten(chunky, chunks, dead_write):
    """A longer dead write left bytes past the recorded offset (S3: parts and a tail past
    it); a shorter file must not keep them."""
    api = ClientApi()
    data = os.urandom(5000)
    upload_id = api.put("/upload/", data[:1000], content_range="bytes 0-999/5000").data["upload_id"]
    # What a crashed request could have left: written through the storage, never recorded.
    writer = runtime.get_storage().writer(
        upload_id,
        create=False,
        start=1000,
        limit=None,
        on_block=lambda block: None,
        overflow=lambda: TooLarge(None, None),
    )
    writer.write(os.urandom(dead_write))
    writer.close()
    assert (
        api.put(f"/upload/{upload_id}/", data[1000:], content_range="bytes 1000-4999/5000").status
        == 200
    )
    assert (
        api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()}).status == 200
    )
    done = api.get(f"/upload/{upload_id}/").data
    assert final_bytes(done["final_name"]) == data


def _worker_pids(site: SiteProcess) -> list[int]:
    return [child.pid for child in psutil.Process(site.proc.pid).children()]


@pytest.mark.live
@pytest.mark.fault
def test_server_worker_killed_mid_chunk_then_retry(tmp_path):
    """SIGKILL the gunicorn worker while it streams a chunk; the client retries and nothing is corrupted."""
    env = live_env(tmp_path, CHUNKY_LOCK_TIMEOUT_SECONDS="1")
    chunk = 4 << 20
    data = os.urandom(3 * chunk)
    total = len(data)
    with SiteProcess(env, workers=1, threads=2) as site, WorkerProcess(env):
        api = LiveApi(site.url)
        upload_id = api.put(
            "/upload/", data[:chunk], content_range=f"bytes 0-{chunk - 1}/{total}"
        ).data["upload_id"]
        [victim] = _worker_pids(site)

        # Send half of the second chunk by hand, then kill the worker that is reading it.
        with socket.create_connection(("127.0.0.1", site.port)) as sock:
            head = (
                f"PUT /upload/{upload_id}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {chunk}\r\n"
                f"Content-Range: bytes {chunk}-{2 * chunk - 1}/{total}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n"
            )
            sock.sendall(head.encode() + os.urandom(chunk // 2))
            part = Path(env["CHUNKY_UPLOAD_DIR"]) / f"{upload_id}.part"
            wait_for(lambda: part.stat().st_size > chunk, message="the dying request to write")
            os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: _worker_pids(site) and _worker_pids(site) != [victim],
            message="a new gunicorn worker",
        )

        assert api.get(f"/upload/{upload_id}/").data["offset"] == chunk
        deadline = time.monotonic() + 20
        while True:  # what a client does: retry the chunk with backoff until the dead lock lapses
            reply = api.put(
                f"/upload/{upload_id}/",
                data[chunk : 2 * chunk],
                content_range=f"bytes {chunk}-{2 * chunk - 1}/{total}",
            )
            if reply.status != 409 and reply.status < 500:
                break
            assert time.monotonic() < deadline, reply.body
            time.sleep(0.2)
        assert reply.status == 200, reply.body
        reply = api.put(
            f"/upload/{upload_id}/",
            data[2 * chunk :],
            content_range=f"bytes {2 * chunk}-{total - 1}/{total}",
        )
        assert reply.status == 200, reply.body
        assert (
            api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()}).status
            == 200
        )
        done = wait_for(
            lambda: (s := api.get(f"/upload/{upload_id}/").data)["status"] == "complete" and s
        )
        assert (Path(env["MEDIA_ROOT"]) / done["final_name"]).read_bytes() == data
