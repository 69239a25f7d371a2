"""Racing requests on one upload: exactly one wins each offset, the others are
refused `locked` while the winner holds the lock, and the stored bytes always
match the checksum state (proved by completing with their md5).

Each round requires overlap: the winner cannot commit before the others were
sent, so requests that ran one after another (a missing lock, a server that
serializes them) fail the test instead of passing it with `offset_mismatch`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from chunky_redis.core.s3 import S3ChunkStorage
from chunky_redis.core.session import ChunkSession
from tests.conftest import BACKENDS, cleanup_keys, configure
from tests.support.api import ClientApi, LiveApi, Reply
from tests.support.chunk_views import (
    BUCKET,
    TEST_PART_SIZE,
    S3Chunks,
    chunk_view,
    final_bytes,
    use_s3_chunks,
)
from tests.support.processes import SiteProcess, WorkerProcess, live_env, wait_for
from tests.support.s3 import CREDENTIALS

THREADS = 8
CHUNK = 256 * 1024
CHUNKS = 5
UPLOADS = 3
ROUNDS = UPLOADS * (CHUNKS - 1)

# send(i, upload_id, body, content_range, barrier): one racing request. It must pass
# the barrier (all THREADS requests are in flight) before its chunk can be committed.
Send = Callable[[int, str, bytes, str, threading.Barrier], Reply]


def race(
    make_api,
    send: Send,
    upload_dir: Path,
    media_root: Path | None,
    holds: Callable[[str, bytes], bool] | None = None,
    final: Callable[[str], bytes] | None = None,
) -> list[Counter]:
    """Run the race on UPLOADS uploads; returns, per round, how the losers were answered.

    ``holds(upload_id, data)`` and ``final(name)`` read the chunk storage and the final
    storage when they are not ``upload_dir`` and ``media_root`` (S3)."""
    holds = holds or (
        lambda upload_id, data: (upload_dir / f"{upload_id}.part").read_bytes() == data
    )
    final = final or (lambda name: (media_root / name).read_bytes())
    rounds: list[Counter] = []
    total = CHUNK * CHUNKS
    for _ in range(UPLOADS):
        api = make_api()
        first = os.urandom(CHUNK)
        reply = api.put("/upload/", first, content_range=f"bytes 0-{CHUNK - 1}/{total}")
        assert reply.status == 200, reply.body
        upload_id = reply.data["upload_id"]
        accepted = [first]
        for index in range(1, CHUNKS):
            start, end = index * CHUNK, (index + 1) * CHUNK - 1
            candidates = [os.urandom(CHUNK) for _ in range(THREADS)]
            replies: list = [None] * THREADS
            barrier = threading.Barrier(THREADS, timeout=30)

            def run(i: int) -> None:
                content_range = f"bytes {start}-{end}/{total}"
                replies[i] = send(i, upload_id, candidates[i], content_range, barrier)

            threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert all(r is not None for r in replies), "a racing request never got an answer"
            winners = [i for i, r in enumerate(replies) if r.status == 200]
            assert len(winners) == 1, [(r.status, r.data) for r in replies]
            outcomes: Counter = Counter()
            for i, r in enumerate(replies):
                if i in winners:
                    continue
                assert r.status in (409, 400), r.body
                assert r.data["code"] in ("locked", "offset_mismatch"), r.data
                if r.data["code"] == "offset_mismatch":
                    assert r.data["offset"] == end + 1
                outcomes[r.data["code"]] += 1
            assert sum(outcomes.values()) == THREADS - 1
            rounds.append(outcomes)
            accepted.append(candidates[winners[0]])
        expected = b"".join(accepted)
        assert holds(upload_id, expected)
        reply = api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(expected).hexdigest()})
        # the incremental digest equals the stored bytes' digest
        assert reply.status == 200, reply.body
        if media_root is not None:
            done = wait_for(
                lambda: (
                    api.get(f"/upload/{upload_id}/").data["status"] == "complete"
                    and api.get(f"/upload/{upload_id}/").data
                ),
                message="completion",
            )
            assert final(done["final_name"]) == expected
    return rounds


@pytest.mark.parametrize(
    "backend, storage",
    [
        pytest.param(*getattr(b, "values", (b,)), "filesystem", marks=getattr(b, "marks", ()))
        for b in BACKENDS
    ]
    + [pytest.param("redis", "s3", marks=pytest.mark.live)],
)
def test_racing_chunks_in_process(backend, storage, request, settings, tmp_path, monkeypatch):
    """The winner holds its lock until a loser has been answered: that loser is `locked`."""
    configure(settings, backend, tmp_path)
    if storage == "s3":
        use_s3_chunks(settings, request.getfixturevalue("local_s3_chunks"))
    view = chunk_view(settings)
    # One event per round (upload and offset): a loser of an earlier round must not let this
    # round's winner commit before any of its own losers was answered.
    answered: defaultdict[tuple[str, int], threading.Event] = defaultdict(threading.Event)
    real_finish = ChunkSession.finish

    def finish_after_a_loser(self, **kwargs):
        if not self.is_new:
            event = answered[(self.upload_id, self.byte_range.start)]
            assert event.wait(10), "no other request was answered while the winner held the lock"
        return real_finish(self, **kwargs)

    monkeypatch.setattr(ChunkSession, "finish", finish_after_a_loser)

    def send(i, upload_id, body, content_range, barrier):
        api = ClientApi()
        barrier.wait()
        reply = api.put(f"/upload/{upload_id}/", body, content_range=content_range)
        if reply.status != 200:
            start = int(content_range.split()[1].split("-")[0])
            answered[(upload_id, start)].set()
        return reply

    try:
        rounds = race(
            ClientApi,
            send,
            Path(settings.CHUNKY_REDIS_UPLOAD_DIR),
            Path(settings.MEDIA_ROOT),
            view.holds,
            final_bytes,
        )
    finally:
        cleanup_keys(settings)
    assert len(rounds) == ROUNDS
    assert all(r["locked"] >= 1 for r in rounds), rounds


def send_in_two_halves(base_url: str) -> Send:
    """A raw request whose body is sent in two halves, the barrier between them.

    The server takes (or is refused) the lock when the headers arrive, and a
    refused request is answered only once its body was drained, so all THREADS
    requests are in flight together, and the winner holds its lock until every
    other request has sent its headers.
    """
    address = urlsplit(base_url)

    def send(i, upload_id, body, content_range, barrier):
        conn = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        try:
            conn.putrequest("PUT", f"/upload/{upload_id}/")
            conn.putheader("Content-Type", "application/octet-stream")
            conn.putheader("Content-Range", content_range)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            conn.send(body[: len(body) // 2])
            barrier.wait()
            conn.send(body[len(body) // 2 :])
            response = conn.getresponse()
            return Reply(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
            )
        finally:
            conn.close()

    return send


@pytest.mark.live
@pytest.mark.parametrize("storage", ["filesystem", "s3"])
def test_racing_chunks_against_a_server(storage, request, tmp_path):
    """Two gunicorn workers and a Celery worker. With S3 chunks, the Celery worker has an
    upload directory of its own: nothing but Redis and the bucket is shared."""
    env = live_env(tmp_path)
    holds = final = None
    worker_env = env
    if storage == "s3":
        s3 = request.getfixturevalue("local_s3_chunks")
        location = f"t-{uuid.uuid4().hex[:12]}"
        env.update(
            CREDENTIALS,
            CHUNKY_TEST_S3_ENDPOINT=s3.endpoint_url,
            CHUNKY_TEST_S3_BUCKET=BUCKET,
            CHUNKY_TEST_S3_LOCATION=location,
            CHUNKY_FINAL_STORAGE="storages.backends.s3.S3Storage",
            CHUNKY_CHUNK_STORAGE="s3",
            CHUNKY_S3_PART_SIZE=str(TEST_PART_SIZE),
        )
        worker_env = {**env, "CHUNKY_UPLOAD_DIR": str(tmp_path / "worker-chunks")}
        view = S3Chunks(
            S3ChunkStorage(
                s3.client(),
                BUCKET,
                object_key=lambda upload_id: f"{location}/chunky_redis/{upload_id}/upload",
                work_prefix=f"{location}/chunky_redis-uploading/",
            )
        )
        holds = view.holds
        client = s3.client()

        def final(name: str) -> bytes:
            return bytes(client.get_object(Bucket=BUCKET, Key=f"{location}/{name}")["Body"].read())

    with SiteProcess(env, workers=2, threads=4) as site, WorkerProcess(worker_env):
        rounds = race(
            lambda: LiveApi(site.url),
            send_in_two_halves(site.url),
            Path(env["CHUNKY_UPLOAD_DIR"]),
            Path(env["MEDIA_ROOT"]),
            holds,
            final,
        )
    if storage == "s3":
        chunk_dir = Path(env["CHUNKY_UPLOAD_DIR"])
        assert not chunk_dir.exists() or not any(chunk_dir.iterdir())  # no chunk file, ever
    assert len(rounds) == ROUNDS
    losers = sum(rounds, Counter())
    print("losers answered:", dict(losers))
    # The server took the racing requests at once: most rounds saw a `locked` refusal.
    assert sum(1 for r in rounds if r["locked"]) >= ROUNDS // 2, rounds
