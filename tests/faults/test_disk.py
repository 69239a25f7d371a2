"""A full upload disk: a small tmpfs mounted for the upload directory and the media root.

While the disk is full, chunks are refused with a JSON 503 and nothing is recorded
for them; once space is freed the same uploads carry on and complete byte for byte.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time

import pytest
import requests

from tests.faults.conftest import check, count
from tests.faults.harness import Service, Tally, Uploaders, check_outcomes
from tests.support.processes import wait_for

pytestmark = pytest.mark.fault
TEST = "tests/faults/test_disk.py"


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    mount = tmp_path_factory.mktemp("disk") / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)  # lazily: a process may hold it


def fill(mount, leave: int) -> os.PathLike:
    """Take all the space but ``leave`` bytes."""
    filler = mount / "filler"
    free = shutil.disk_usage(mount).free
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


@pytest.fixture(scope="module")
def run(disk, tmp_path_factory, fault_rows):
    wanted = count(1, 3)
    rnd = random.Random(3)
    total = Tally()
    refusals, health_while_full, wrong_offsets = [], [], 0
    with Service(
        tmp_path_factory.mktemp("disk-service"),
        upload_dir=disk / "chunks",
        media_root=disk / "media",
    ) as svc:
        for i in range(wanted):
            filler = fill(disk, leave=rnd.randint(256 << 10, 1 << 20))
            uploads = Uploaders(
                svc,
                2,
                size=lambda r: r.randint(2 << 20, 3 << 20),
                chunk_size=256 << 10,
                deadline=120,
                seed=30 + 2 * i,
            ).start(once=True)
            wait_for(
                lambda: all(
                    c.current and c.current.answers[(503, "storage_unavailable")] >= 2
                    for c in uploads.clients
                ),
                timeout=60,
                message="both uploads to be refused for lack of space",
            )
            for c in uploads.clients:  # nothing recorded beyond the bytes on disk
                upload_id = c.current.upload_id
                if upload_id is None:
                    continue  # refused before its first chunk was recorded: no record at all
                r = requests.get(f"{svc.base_url}/upload/{upload_id}/", timeout=10)
                part = svc.chunk_dir() / f"{upload_id}.part"
                if r.json()["offset"] > part.stat().st_size:
                    wrong_offsets += 1
            health = requests.get(f"{svc.base_url}/healthz", timeout=10)
            health_while_full.append(health.status_code)
            time.sleep(rnd.uniform(0.5, 2.0))
            os.unlink(filler)
            tally = check_outcomes(svc, uploads.stop())
            for c in uploads.clients:
                refusals += c.current.non_json
            total.merge(tally)
            shutil.rmtree(disk / "media", ignore_errors=True)  # make room for the next round
    checks = {
        "a full disk answers 503 JSON storage_unavailable": check(
            total.answers[(503, "storage_unavailable")] > 0 and total.non_json == 0,
            f"{total.answers[(503, 'storage_unavailable')]} answers 503 storage_unavailable, "
            f"{total.non_json} not JSON",
        ),
        "no offset recorded beyond the bytes on disk": check(
            wrong_offsets == 0, f"{wrong_offsets} upload(s) recorded past their file"
        ),
        "/healthz fails while the upload disk is full": check(
            all(code == 503 for code in health_while_full),
            f"/healthz answered {health_while_full}",
            "issue 8 part 5 (input)",
        ),
    }
    fault_rows.record(
        "full-disk",
        fault="the upload disk full (8 MiB tmpfs), then space freed",
        injected=wanted,
        tally=total,
        checks=checks,
        test=TEST,
    )
    return total, wrong_offsets, health_while_full


def test_full_disk(run):
    tally, wrong_offsets, _ = run
    assert tally.ok, tally.problems
    assert tally.answers[(503, "storage_unavailable")] > 0
    assert tally.non_json == 0 and tally.http_500 == 0, tally.problems
    assert wrong_offsets == 0


def test_healthz_fails_while_the_disk_is_full(run):
    *_, health_while_full = run
    assert all(code == 503 for code in health_while_full)
