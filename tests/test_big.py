"""Large uploads against the bundled site under its production server, on the real Redis."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from chunky_redis.core.checksums import file_hexdigest
from tests.support.processes import SiteProcess, WorkerProcess, live_env, wait_for

pytestmark = [pytest.mark.live, pytest.mark.slow]

MiB = 1 << 20


def pseudo_random_chunks(total: int, chunk: int, seed: int = 7):
    rng = random.Random(seed)
    for start in range(0, total, chunk):
        yield start, rng.randbytes(min(chunk, total - start))


def test_one_gib_in_8_mib_chunks(tmp_path):
    total, chunk = 1 << 30, 8 * MiB
    env = live_env(tmp_path)
    with SiteProcess(env, workers=2) as site, WorkerProcess(env):
        session = requests.Session()
        md5 = hashlib.md5()
        upload_id = None
        started = time.monotonic()
        for start, block in pseudo_random_chunks(total, chunk):
            md5.update(block)
            url = f"{site.url}/upload/" + (f"{upload_id}/" if upload_id else "")
            headers = {
                "Content-Range": f"bytes {start}-{start + len(block) - 1}/{total}",
                "Content-Type": "application/octet-stream",
            }
            reply = session.put(url, data=block, headers=headers, timeout=60)
            assert reply.status_code == 200, reply.text
            upload_id = reply.json()["upload_id"]
            assert reply.json()["offset"] == start + len(block)
        elapsed = time.monotonic() - started
        reply = session.post(f"{site.url}/upload/{upload_id}/", json={"md5": md5.hexdigest()})
        assert reply.status_code == 200, reply.text
        done = wait_for(
            lambda: (
                (s := session.get(f"{site.url}/upload/{upload_id}/").json())["status"] == "complete"
                and s
            ),
            timeout=120,
        )
        final = Path(env["MEDIA_ROOT"]) / done["final_name"]
        assert final.stat().st_size == total
        assert (
            file_hexdigest(str(final), "md5") == md5.hexdigest()
        )  # byte-identical, read back from disk
        print(
            f"1 GiB uploaded in {elapsed:.1f}s ({total / MiB / elapsed:.0f} MiB/s incl. client hashing)"
        )


def _peak_rss_during(pid: int, action) -> tuple[int, int]:
    proc = psutil.Process(pid)
    baseline = proc.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        action()
    finally:
        done.set()
        sampler.join()
    return baseline, peak


@pytest.mark.parametrize("kind", ["raw", "multipart"])
def test_a_256_mib_chunk_does_not_grow_the_worker(tmp_path, kind):
    size = 256 * MiB
    env = live_env(tmp_path)
    with SiteProcess(env, workers=1, threads=1) as site:
        [worker] = psutil.Process(site.proc.pid).children()
        requests.put(f"{site.url}/upload/", data=b"warm-up")  # import and connect everything first

        head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n'
        tail = b"\r\n--B--\r\n"
        prefix, suffix = (head, tail) if kind == "multipart" else (b"", b"")

        def send():
            ctype = (
                "multipart/form-data; boundary=B"
                if kind == "multipart"
                else "application/octet-stream"
            )
            headers = {"Content-Range": f"bytes 0-{size - 1}/{size}", "Content-Type": ctype}
            body = _Body(prefix, size, suffix)
            reply = requests.put(f"{site.url}/upload/", data=body, headers=headers, timeout=300)
            assert reply.status_code == 200, reply.text
            assert reply.json()["offset"] == size

        baseline, peak = _peak_rss_during(worker.pid, send)
    growth = (peak - baseline) / MiB
    print(
        f"{kind}: worker RSS {baseline / MiB:.0f} MiB -> peak {peak / MiB:.0f} MiB "
        f"(+{growth:.1f} MiB) for a 256 MiB chunk"
    )
    assert growth < 32, f"the worker grew by {growth:.1f} MiB receiving a 256 MiB chunk"


class _Body:
    """A streamed request body of known length that never exists whole in the client either."""

    def __init__(self, prefix: bytes, size: int, suffix: bytes):
        self.parts = [prefix, suffix]
        self.remaining = size
        self.block = os.urandom(MiB)
        self.len = len(prefix) + size + len(suffix)

    def __len__(self) -> int:
        return self.len

    def read(self, n: int = -1) -> bytes:
        if self.parts[0]:
            out, self.parts[0] = self.parts[0], b""
            return out
        if self.remaining:
            take = min(self.remaining, MiB if n is None or n < 0 else max(n, 1))
            self.remaining -= take
            return self.block[:take]
        out, self.parts[1] = self.parts[1], b""
        return out
