"""Power loss with deferred durability (CHUNKY_REDIS_SYNC_EVERY, issue 11), on both backends.

A simulated disk keeps, for every chunk file, what its last ``fdatasync`` made durable; a
"power loss" puts every file back to that (the bytes written since are lost: zeros where
the file had grown, or the file cut short), and the service "restarts" with a new boot
id. Redis keeps everything (the worst case: the record counts bytes the disk lost).
Whatever the losses, no status read tells an offset past the bytes on disk that are the
client's, and every upload completes with exactly the client's bytes.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable

import pytest

from chunky_redis import runtime
from chunky_redis.core import errors as exc
from chunky_redis.core.context import Policy
from chunky_redis.core.filesystem import SUFFIX, FileSystemChunkStorage
from chunky_redis.core.http import ByteRange
from chunky_redis.core.store import PROCESSING, Upload
from chunky_redis.core.uploads import UploadService

KiB, MiB = 1 << 10, 1 << 20
OWNER = "alice"


class PowerLossDisk:
    """What each chunk file's last fdatasync made durable, and a power loss that keeps only that."""

    def __init__(self, directory: str, monkeypatch: pytest.MonkeyPatch):
        self.directory = directory
        self.synced: dict[str, bytes] = {}
        self.syncs = 0
        real = os.fdatasync

        def fdatasync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if path.endswith(SUFFIX):
                with open(path, "rb") as f:
                    self.synced[os.path.basename(path)] = f.read()
                self.syncs += 1
            real(fd)

        monkeypatch.setattr(os, "fdatasync", fdatasync)

    def power_loss(self, how: str) -> None:
        """``zeros``: unsynced bytes read back as zeros; ``cut``: the file ends where it was
        synced; ``none``: the page cache happened to reach the disk (nothing lost)."""
        if how == "none":
            return
        for name in os.listdir(self.directory):
            if not name.endswith(SUFFIX):
                continue
            path = os.path.join(self.directory, name)
            durable = self.synced.get(name, b"")
            size = os.path.getsize(path)
            with open(path, "wb") as f:
                f.write(durable)
                if how == "zeros" and size > len(durable):
                    f.write(b"\0" * (size - len(durable)))

    def on_disk(self, upload_id: str) -> bytes:
        with open(os.path.join(self.directory, upload_id + SUFFIX), "rb") as f:
            return f.read()

    @classmethod
    def under(cls, chunky, monkeypatch: pytest.MonkeyPatch) -> PowerLossDisk:
        """The simulated disk of a test's upload directory."""
        directory = chunky.CHUNKY_REDIS_UPLOAD_DIR
        os.makedirs(directory, exist_ok=True)
        return cls(directory, monkeypatch)


@pytest.fixture
def disk(chunky, monkeypatch) -> PowerLossDisk:
    return PowerLossDisk.under(chunky, monkeypatch)


class Background(list[Callable[[], None]]):
    """A process's window syncs (started once their chunk is answered), run when the test
    says; a power loss drops those not run yet, as it kills the process."""

    def run(self, rng: random.Random | None = None) -> None:
        """Run them all, or with ``rng`` a random number of the oldest."""
        for _ in range(rng.randint(0, len(self)) if rng else len(self)):
            self.pop(0)()


def service(
    chunky,
    sync_every: int,
    boot: str,
    completed: list[Upload],
    background: Background | None = None,
) -> UploadService:
    """The service as one boot of the host runs it (chunk files synced as ``sync_every`` says).
    A window's sync runs at once after its chunk, or in ``background`` when given."""
    svc = UploadService(
        store=runtime.get_store(),
        storage=FileSystemChunkStorage(
            chunky.CHUNKY_REDIS_UPLOAD_DIR, fsync=True, sync_chunks=not sync_every
        ),
        policy=Policy(sync_every=sync_every, boot=boot),
        on_complete=completed.append,
    )
    svc.context.run_behind = background.append if background is not None else _at_once
    return svc


def _at_once(job: Callable[[], None]) -> None:
    job()


def send(
    svc: UploadService,
    upload_id: str | None,
    data: bytes,
    start: int,
    total: int,
    digests: tuple[str, ...] = (),
) -> Upload:
    session = svc.start_chunk(
        owner=OWNER,
        upload_id=upload_id,
        byte_range=ByteRange(start, start + len(data) - 1, total),
        length=len(data),
        max_bytes=None,
        digests=digests,
    )
    try:
        session.write(data)
        return session.finish(filename="f.bin")
    except BaseException:
        session.abort()
        raise


def upload_through_power_losses(
    chunky, disk: PowerLossDisk, *, sync_every: int, seed: int, check: Callable[..., None]
) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(3 * MiB + 777)
    chunk = 96 * KiB
    completed: list[Upload] = []
    boot = 0
    background = Background()  # window syncs run late, at random points, or never
    svc = service(chunky, sync_every, f"boot-{boot}", completed, background)
    upload_id = send(svc, None, data[:chunk], 0, len(data)).upload_id
    offset = chunk  # what the client was last told
    losses = 0
    while offset < len(data):
        background.run(rng)
        if rng.random() < 0.15:
            disk.power_loss(rng.choice(["zeros", "cut", "none"]))
            background.clear()  # the process died with the host
            losses += 1
            boot += 1
            svc = service(chunky, sync_every, f"boot-{boot}", completed, background)
            if rng.random() < 0.5:  # the client asks where to go on ...
                told = svc.status(owner=OWNER, upload_id=upload_id).offset
                check(disk, upload_id, data, told)
                offset = told
            # ... or sends its next chunk at the offset it knew, and is told where to resume
        try:
            offset = send(svc, upload_id, data[offset : offset + chunk], offset, len(data)).offset
        except exc.OffsetMismatch as e:
            told = e.expected
            check(disk, upload_id, data, told)
            offset = told
    assert losses >= 3  # the seed puts several power losses in every upload
    done = svc.complete(owner=OWNER, upload_id=upload_id, checksum=hashlib.md5(data).hexdigest())
    assert done.status == PROCESSING and [u.upload_id for u in completed] == [upload_id]
    disk.power_loss("zeros")  # completed: nothing of it may be unsynced any more
    assert disk.on_disk(upload_id) == data


def offset_is_durable(disk: PowerLossDisk, upload_id: str, data: bytes, told: int) -> None:
    """The offset a client is told never exceeds the durable bytes, and those are its own."""
    durable = disk.synced.get(upload_id + SUFFIX, b"")
    assert told <= len(durable)
    assert durable[:told] == data[:told]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_deferred_durability_survives_power_losses(chunky, disk, seed):
    upload_through_power_losses(
        chunky, disk, sync_every=512 * KiB, seed=seed, check=offset_is_durable
    )
    # the deferred policy synced far less often than once a chunk
    assert disk.syncs < (3 * MiB // (96 * KiB)) / 2


def test_sync_every_chunk_survives_power_losses(chunky, disk):
    """The default policy (0): every acknowledged chunk is durable, nothing ever goes back."""
    upload_through_power_losses(chunky, disk, sync_every=0, seed=4, check=offset_is_durable)


def test_unsynced_bytes_that_survived_are_kept(chunky, disk):
    """After a crash that lost nothing, the re-read bytes match: the offset does not go back."""
    data = random.Random(5).randbytes(2 * MiB)
    completed: list[Upload] = []
    svc = service(chunky, 1 * MiB, "boot-0", completed)
    up = send(svc, None, data[: 256 * KiB], 0, len(data))
    up = send(svc, up.upload_id, data[256 * KiB : 512 * KiB], 256 * KiB, len(data))
    assert (up.durable, up.boot) == (0, "boot-0")  # recorded, not yet synced
    assert disk.syncs == 0
    after = service(chunky, 1 * MiB, "boot-1", completed)
    assert after.status(owner=OWNER, upload_id=up.upload_id).offset == 0  # not known to be on disk
    up = send(after, up.upload_id, data[512 * KiB : 768 * KiB], 512 * KiB, len(data))
    assert up.offset == 768 * KiB  # the first 512 KiB checked out: kept
    assert disk.synced[up.upload_id + SUFFIX][: 512 * KiB] == data[: 512 * KiB]


def test_lost_bytes_take_the_upload_back_to_the_synced_offset(chunky, disk):
    data = random.Random(6).randbytes(2 * MiB)
    completed: list[Upload] = []
    svc = service(chunky, 512 * KiB, "boot-0", completed)
    up = send(svc, None, data[: 512 * KiB], 0, len(data))  # fills the window: synced
    up = send(svc, up.upload_id, data[512 * KiB : 768 * KiB], 512 * KiB, len(data))
    assert (up.offset, up.durable) == (768 * KiB, 512 * KiB)
    disk.power_loss("zeros")
    after = service(chunky, 512 * KiB, "boot-1", completed)
    with pytest.raises(exc.OffsetMismatch) as e:
        send(after, up.upload_id, data[768 * KiB : 1024 * KiB], 768 * KiB, len(data))
    assert e.value.expected == 512 * KiB
    assert after.status(owner=OWNER, upload_id=up.upload_id).offset == 512 * KiB
    up = send(after, up.upload_id, data[512 * KiB :], 512 * KiB, len(data))
    after.complete(owner=OWNER, upload_id=up.upload_id, checksum=hashlib.md5(data).hexdigest())
    assert disk.on_disk(up.upload_id) == data


def test_the_same_boot_trusts_its_page_cache(chunky, disk):
    """A process of the same boot (a worker restarted, not the host) re-reads nothing."""
    data = random.Random(7).randbytes(1 * MiB)
    completed: list[Upload] = []
    svc = service(chunky, 4 * MiB, "boot-0", completed)
    up = send(svc, None, data[: 256 * KiB], 0, len(data))
    again = service(chunky, 4 * MiB, "boot-0", completed)
    assert again.status(owner=OWNER, upload_id=up.upload_id).offset == 256 * KiB
    send(again, up.upload_id, data[256 * KiB :], 256 * KiB, len(data))
    assert disk.syncs == 1  # only the chunk that reached the end synced


def test_a_checked_tail_clears_the_old_boot_from_the_record(chunky, disk):
    """Unsynced bytes of boot 0, then a boot that syncs every chunk: once they are checked
    the record no longer names boot 0, so what this boot writes next is told in full."""
    data = random.Random(8).randbytes(1 * MiB)
    completed: list[Upload] = []
    svc = service(chunky, 1 * MiB, "boot-0", completed)
    up = send(svc, None, data[: 256 * KiB], 0, len(data))
    assert (up.durable, up.boot) == (0, "boot-0")
    after = service(chunky, 0, "boot-1", completed)
    up = send(after, up.upload_id, data[256 * KiB : 512 * KiB], 256 * KiB, len(data))
    assert (up.offset, up.durable, up.boot) == (512 * KiB, 256 * KiB, "")
    assert after.store.get(up.upload_id).boot == ""  # type: ignore[union-attr]
    assert after.status(owner=OWNER, upload_id=up.upload_id).offset == 512 * KiB


@pytest.mark.parametrize("resume", ["asks_first", "sends_at_its_offset"])
def test_going_back_drops_the_extra_digests(chunky, disk, resume):
    """Going back to the synced offset loses the extra digests' states (they cannot be
    rewound): none is told or continued from a state of bytes that were lost."""
    data = random.Random(9).randbytes(1 * MiB)
    completed: list[Upload] = []
    svc = service(chunky, 512 * KiB, "boot-0", completed)
    up = send(svc, None, data[: 512 * KiB], 0, len(data), digests=("sha256",))  # synced
    up = send(svc, up.upload_id, data[512 * KiB : 768 * KiB], 512 * KiB, len(data))
    assert up.hexdigest("sha256") == hashlib.sha256(data[: 768 * KiB]).hexdigest()
    disk.power_loss("zeros")
    after = service(chunky, 512 * KiB, "boot-1", completed)
    if resume == "asks_first":
        assert after.status(owner=OWNER, upload_id=up.upload_id).offset == 512 * KiB
    else:
        with pytest.raises(exc.OffsetMismatch):
            send(after, up.upload_id, data[768 * KiB :], 768 * KiB, len(data))
        back = after.status(owner=OWNER, upload_id=up.upload_id)
        assert (back.offset, back.hexdigest("sha256")) == (512 * KiB, None)
    up = send(after, up.upload_id, data[512 * KiB :], 512 * KiB, len(data))
    assert up.hexdigest("sha256") is None
    assert up.hexdigest("md5") == hashlib.md5(data).hexdigest()
    stored = after.status(owner=OWNER, upload_id=up.upload_id)
    assert stored.hexdigest("sha256") is None


def unsure_upload(chunky, completed: list[Upload]) -> tuple[UploadService, Upload, bytes]:
    """An upload whose last 256 KiB boot 0 left unsynced, and the service of boot 1."""
    data = random.Random(10).randbytes(1 * MiB)
    svc = service(chunky, 1 * MiB, "boot-0", completed)
    up = send(svc, None, data[: 256 * KiB], 0, len(data))
    return service(chunky, 1 * MiB, "boot-1", completed), up, data


def test_a_lock_lost_while_the_tail_is_checked_is_told(chunky, disk, monkeypatch):
    completed: list[Upload] = []
    after, up, data = unsure_upload(chunky, completed)
    store = after.store

    def sync_slowly(upload_id: str) -> None:  # the lock lapses meanwhile
        store.redis.delete(store.lock_key(upload_id))

    monkeypatch.setattr(after.storage, "sync", sync_slowly)
    with pytest.raises(exc.LockLost):
        send(after, up.upload_id, data[256 * KiB : 512 * KiB], 256 * KiB, len(data))
    assert store.get(up.upload_id).boot == "boot-0"  # type: ignore[union-attr]  # unsettled


def test_a_record_that_moved_while_the_tail_is_checked_is_left_alone(chunky, disk, monkeypatch):
    """Another writer moved the record (it took the lapsed lock): nothing is settled, the
    client is told to retry, and the lock this request took is given back."""
    completed: list[Upload] = []
    after, up, data = unsure_upload(chunky, completed)
    store = after.store

    def sync_slowly(upload_id: str) -> None:
        store.redis.hset(store.record_key(upload_id), "offset", 300 * KiB)

    monkeypatch.setattr(after.storage, "sync", sync_slowly)
    with pytest.raises(exc.UploadLocked) as e:
        send(after, up.upload_id, data[256 * KiB : 512 * KiB], 256 * KiB, len(data))
    assert type(e.value) is exc.UploadLocked
    assert e.value.detail == "The upload moved while it was checked; try again."
    assert store.get(up.upload_id).boot == "boot-0"  # type: ignore[union-attr]
    code, _ = store.acquire(up.upload_id, OWNER, "next-request")
    assert code == "ok"  # the lock was released


def unsynced_deferred_length_upload(svc: UploadService, data: bytes) -> str:
    """An upload whose length is declared only after its bytes: none of them reached the
    upload's end when written, so none was synced."""
    upload_id = svc.create(owner=OWNER, length=None, max_bytes=None).upload_id
    session = svc.start_append(
        owner=OWNER,
        upload_id=upload_id,
        offset=0,
        length=len(data),
        max_bytes=None,
        length_unknown_ok=True,
    )
    session.write(data)
    assert session.finish().boot != ""
    svc.declare_length(owner=OWNER, upload_id=upload_id, length=len(data), max_bytes=None)
    return upload_id


def test_a_completion_syncs_the_bytes_left_unsynced(chunky, disk):
    data = random.Random(11).randbytes(300 * KiB)
    completed: list[Upload] = []
    svc = service(chunky, 1 * MiB, "boot-0", completed)
    upload_id = unsynced_deferred_length_upload(svc, data)
    assert upload_id + SUFFIX not in disk.synced
    svc.complete(owner=OWNER, upload_id=upload_id, checksum=hashlib.md5(data).hexdigest())
    assert disk.synced[upload_id + SUFFIX] == data


def test_a_completion_syncs_nothing_already_synced(chunky, disk):
    data = random.Random(12).randbytes(300 * KiB)
    completed: list[Upload] = []
    svc = service(chunky, 1 * MiB, "boot-0", completed)
    up = send(svc, None, data[: 100 * KiB], 0, len(data))  # not synced: marked with the boot
    assert (up.durable, up.boot, disk.syncs) == (0, "boot-0", 0)
    up = send(svc, up.upload_id, data[100 * KiB :], 100 * KiB, len(data))  # reaches the end
    assert (up.durable, up.boot, disk.syncs) == (len(data), "", 1)
    assert svc.store.get(up.upload_id).boot == ""  # type: ignore[union-attr]  # mark cleared
    svc.complete(owner=OWNER, upload_id=up.upload_id, checksum=hashlib.md5(data).hexdigest())
    assert disk.syncs == 1


def test_a_completion_after_the_policy_changed_syncs_the_bytes_left_unsynced(chunky, disk):
    """Deferred durability turned off (sync every chunk) by a restart on the same boot: the
    bytes the deferred policy left unsynced are still synced before the hand-off."""
    data = random.Random(13).randbytes(300 * KiB)
    completed: list[Upload] = []
    upload_id = unsynced_deferred_length_upload(service(chunky, 1 * MiB, "boot-0", completed), data)
    svc = service(chunky, 0, "boot-0", completed)
    svc.complete(owner=OWNER, upload_id=upload_id, checksum=hashlib.md5(data).hexdigest())
    assert disk.synced[upload_id + SUFFIX] == data
