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
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from chunky_redis.core.session import ChunkSession
from tests.conftest import BACKENDS, cleanup_keys, configure
from tests.support.api import ClientApi, LiveApi, Reply
from tests.support.processes import SiteProcess, WorkerProcess, live_env, wait_for

THREADS = 8
CHUNK = 256 * 1024
CHUNKS = 5
UPLOADS = 3
ROUNDS = UPLOADS * (CHUNKS - 1)

# send(i, upload_id, body, content_range, barrier): one racing request. It must pass
# the barrier (all THREADS requests are in flight) before its chunk can be committed.
Send = Callable[[int, str, bytes, str, threading.Barrier], Reply]


def race(make_api, send: Send, upload_dir: Path, media_root: Path | None) -> list[Counter]:
    """Run the race on UPLOADS uploads; returns, per round, how the losers were answered."""
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
        assert (upload_dir / f"{upload_id}.part").read_bytes() == expected
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
            assert (media_root / done["final_name"]).read_bytes() == expected
    return rounds


@pytest.mark.parametrize("backend", BACKENDS)
def test_racing_chunks_in_process(backend, settings, tmp_path, monkeypatch):
    """The winner holds its lock until a loser has been answered: that loser is `locked`."""
    configure(settings, backend, tmp_path)
    answered = threading.Event()
    real_finish = ChunkSession.finish

    def finish_after_a_loser(self, **kwargs):
        if not self.is_new:
            assert answered.wait(10), "no other request was answered while the winner held the lock"
        return real_finish(self, **kwargs)

    monkeypatch.setattr(ChunkSession, "finish", finish_after_a_loser)

    def send(i, upload_id, body, content_range, barrier):
        api = ClientApi()
        barrier.wait()
        reply = api.put(f"/upload/{upload_id}/", body, content_range=content_range)
        if reply.status != 200:
            answered.set()
        return reply

    def next_round_api():
        answered.clear()
        return ClientApi()

    try:
        rounds = race(
            next_round_api, send, Path(settings.CHUNKY_REDIS_UPLOAD_DIR), Path(settings.MEDIA_ROOT)
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
def test_racing_chunks_against_a_server(tmp_path):
    env = live_env(tmp_path)
    with SiteProcess(env, workers=2, threads=4) as site, WorkerProcess(env):
        rounds = race(
            lambda: LiveApi(site.url),
            send_in_two_halves(site.url),
            Path(env["CHUNKY_UPLOAD_DIR"]),
            Path(env["MEDIA_ROOT"]),
        )
    assert len(rounds) == ROUNDS
    losers = sum(rounds, Counter())
    print("losers answered:", dict(losers))
    # The server took the racing requests at once: most rounds saw a `locked` refusal.
    assert sum(1 for r in rounds if r["locked"]) >= ROUNDS // 2, rounds
