"""What the tus dialect costs per request beside the chunky dialect, without the network or a server.

``python -m bench.dialect_cost [--rounds 7] [--requests 300] [--chunk-kib 64]`` drives the views
in-process through Django's test client (tests/settings.py; ``CHUNKY_REDIS_FSYNC`` off there), on
``BENCH_REDIS_URL`` when set (its own key prefix, deleted at the end) or on a private redis-server:
one upload per dialect, then, round by round, chunky ``PUT``s and tus ``PATCH``es of the same
size sent alternately, one of each in turn (so that the shared machine's load falls on both
alike), each timed; a round's figure is each dialect's median request. It also counts the
Redis round trips of one request of each (``bench/rediscost.py``'s counters) and the Python
function calls per request (cProfile over 50 of each: a count, not a time, so the machine's load
does not move it). A thin dialect
layer shows as a ratio tus / chunky near 1 and the same round trips. Writes
``bench/results/tus/dialect_cost.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from .rediscost import counting, private_redis

RESULTS = Path(__file__).resolve().parent / "results" / "tus" / "dialect_cost.json"
TUS = {"Tus-Resumable": "1.0.0"}
BIG = 1 << 40  # one upload per dialect takes every request of the run


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    url = os.environ.get("BENCH_REDIS_URL")
    if url:
        yield url
    else:
        with private_redis() as url:
            yield url


def senders(client, data: bytes) -> dict[str, Callable[[], None]]:
    """One function per dialect, each appending ``data`` to its own upload."""
    size = len(data)
    first = client.put(
        "/upload/", b"x", content_type="application/octet-stream",
        headers={"Content-Range": f"bytes 0-0/{BIG}"},
    )  # fmt: skip
    upload_id, chunky_offset = first.json()["upload_id"], [1]
    created = client.generic("POST", "/files/", b"", headers={**TUS, "Upload-Length": str(BIG)})
    location, tus_offset = created.headers["Location"].split("testserver", 1)[1], [0]

    def chunky() -> None:
        start = chunky_offset[0]
        headers = {"Content-Range": f"bytes {start}-{start + size - 1}/{BIG}"}
        reply = client.put(
            f"/upload/{upload_id}/", data, content_type="application/octet-stream", headers=headers
        )
        if reply.status_code != 200:
            raise RuntimeError(f"chunky: HTTP {reply.status_code} {reply.content[:200]!r}")
        chunky_offset[0] += size

    def tus() -> None:
        headers = {**TUS, "Upload-Offset": str(tus_offset[0])}
        reply = client.patch(
            location, data, content_type="application/offset+octet-stream", headers=headers
        )
        if reply.status_code != 204:
            raise RuntimeError(f"tus: HTTP {reply.status_code} {reply.content[:200]!r}")
        tus_offset[0] += size

    return {"chunky": chunky, "tus": tus}


def one_ms(send: Callable[[], None]) -> float:
    started = time.perf_counter()
    send()
    return (time.perf_counter() - started) * 1000


def alternating(send: dict[str, Callable[[], None]], requests: int, rnd: int) -> dict[str, float]:
    """``requests`` of each dialect, one of each in turn; each one's median request, in ms."""
    order = list(send) if rnd % 2 == 0 else list(reversed(send))
    times: dict[str, list[float]] = {name: [] for name in order}
    for _ in range(requests):
        for name in order:
            times[name].append(one_ms(send[name]))
    return {name: statistics.median(values) for name, values in times.items()}


def calls_per_request(send: Callable[[], None], requests: int = 50) -> float:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(requests):
        send()
    profile.disable()
    return pstats.Stats(profile).total_calls / requests  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dialect_cost", description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300, help="of each dialect per round")
    parser.add_argument("--chunk-kib", type=int, default=64)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    import tasks  # noqa: F401  (the bundled Celery app, configured from tests.settings: eager)

    django.setup()
    import redis
    from django.conf import settings
    from django.test import Client

    work = Path(tempfile.mkdtemp(prefix="chunky-dialect-cost-"))
    prefix = f"dialect-cost-{uuid.uuid4().hex[:8]}"
    rounds: list[dict[str, float]] = []
    try:
        with redis_url() as url:
            settings.CHUNKY_REDIS_REDIS_URL = url
            settings.CHUNKY_REDIS_KEY_PREFIX = prefix
            settings.CHUNKY_REDIS_UPLOAD_DIR = str(work / "chunks")
            settings.MEDIA_ROOT = str(work / "media")
            settings.CHUNKY_REDIS_ALLOW_ANONYMOUS = True
            send = senders(Client(), os.urandom(args.chunk_kib << 10))
            alternating(send, 20, 0)  # warm-up: scripts loaded, code paths imported
            trips = {}
            for name, fn in send.items():
                with counting() as calls:
                    fn()
                trips[name] = {**calls.as_dict(), "python_calls": calls_per_request(fn)}
            for rnd in range(args.rounds):
                rounds.append(alternating(send, args.requests, rnd))
                print(
                    f"round {rnd + 1}: chunky {rounds[-1]['chunky']:.3f} ms, "
                    f"tus {rounds[-1]['tus']:.3f} ms (median request)",
                    flush=True,
                )
            client = redis.Redis.from_url(url)
            keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = [r["tus"] / r["chunky"] for r in rounds]
    data = {
        "chunk_bytes": args.chunk_kib << 10,
        "requests_per_round": args.requests,
        "round_trips": trips,
        "rounds": rounds,
        "ms_per_request": {
            name: statistics.median(r[name] for r in rounds) for name in ("chunky", "tus")
        },
        "tus_over_chunky": {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(data, indent=1) + "\n")
    r = data["tus_over_chunky"]
    print(
        f"tus / chunky, median request: {r['median']:.2f} [{r['min']:.2f}, {r['max']:.2f}]; "
        f"Redis round trips: chunky {trips['chunky']['round_trips']}, tus {trips['tus']['round_trips']}; "
        f"Python calls: chunky {trips['chunky']['python_calls']:.0f}, tus {trips['tus']['python_calls']:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
