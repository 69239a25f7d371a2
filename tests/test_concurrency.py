"""Racing requests on one upload: exactly one wins each offset, and the stored
bytes always match the checksum state (proved by completing with their md5)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import cleanup_keys, configure
from tests.support.api import ClientApi, LiveApi
from tests.support.processes import SiteProcess, WorkerProcess, live_env, wait_for

THREADS = 8
CHUNK = 256 * 1024
CHUNKS = 5
UPLOADS = 3


def race(make_api, upload_dir: Path, media_root: Path | None) -> Counter:
    """Run the race on UPLOADS uploads; returns how the losing requests were answered."""
    outcomes: Counter = Counter()
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
            barrier = threading.Barrier(THREADS)

            def send(i: int) -> None:
                local = make_api()
                barrier.wait()
                replies[i] = local.put(
                    f"/upload/{upload_id}/",
                    candidates[i],
                    content_range=f"bytes {start}-{end}/{total}",
                )

            threads = [threading.Thread(target=send, args=(i,)) for i in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            winners = [i for i, r in enumerate(replies) if r.status == 200]
            assert len(winners) == 1, [(r.status, r.data) for r in replies]
            for i, r in enumerate(replies):
                if i in winners:
                    continue
                assert r.status in (409, 400), r.body
                assert r.data["code"] in ("locked", "offset_mismatch"), r.data
                if r.data["code"] == "offset_mismatch":
                    assert r.data["offset"] == end + 1
                outcomes[r.data["code"]] += 1
            accepted.append(candidates[winners[0]])
        expected = b"".join(accepted)
        assert (upload_dir / f"{upload_id}.part").read_bytes() == expected
        reply = api.post_json(f"/upload/{upload_id}/", {"md5": hashlib.md5(expected).hexdigest()})
        assert reply.status == 200, (
            reply.body
        )  # the incremental digest equals the stored bytes' digest
        if media_root is not None:
            done = wait_for(
                lambda: (
                    api.get(f"/upload/{upload_id}/").data["status"] == "complete"
                    and api.get(f"/upload/{upload_id}/").data
                ),
                message="completion",
            )
            assert (media_root / done["final_name"]).read_bytes() == expected
    return outcomes


@pytest.mark.parametrize("backend", ["fakeredis", "redis"])
def test_racing_chunks_in_process(backend, settings, tmp_path):
    configure(settings, backend, tmp_path)
    try:
        outcomes = race(
            ClientApi, Path(settings.CHUNKY_REDIS_UPLOAD_DIR), Path(settings.MEDIA_ROOT)
        )
    finally:
        cleanup_keys(settings)
    assert sum(outcomes.values()) == UPLOADS * (CHUNKS - 1) * (THREADS - 1)


@pytest.mark.live
def test_racing_chunks_against_a_server(tmp_path):
    env = live_env(tmp_path)
    with SiteProcess(env, workers=2, threads=4) as site, WorkerProcess(env):
        outcomes = race(
            lambda: LiveApi(site.url), Path(env["CHUNKY_UPLOAD_DIR"]), Path(env["MEDIA_ROOT"])
        )
    assert sum(outcomes.values()) == UPLOADS * (CHUNKS - 1) * (THREADS - 1)
    print("losers answered:", dict(outcomes))
