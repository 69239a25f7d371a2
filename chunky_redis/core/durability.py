"""Deferred durability: chunks synced in windows, and the recovery rule after a host crash.
No Django here.

With ``sync_every`` (bytes, ``CHUNKY_REDIS_SYNC_EVERY``) above 0, a chunk is recorded
without its own ``fdatasync``. The record keeps, beside ``offset`` and ``hash_state``,
the last synced point (``durable``, ``durable_state``) and the boot id of the host
whose page cache holds the bytes past it (``boot``). The chunk that reaches the
upload's length syncs the file first and moves the synced point to its offset: an
upload is never completed, nor handed to post-processing, with a byte that is not on
disk. The chunk that brings the unsynced bytes to ``sync_every`` or more is answered
first; a background sync (context.py, ``SyncBehind``) then syncs the file and moves the
synced point to its offset, if the record still names that sync (``sync_ticket``).

The recovery rule: a process on a host with another boot id (the writer's host
rebooted, or another host serves the upload) cannot know that those bytes survived.
A status read then reports ``durable``; a request that takes the lock syncs the file,
re-reads the bytes from ``durable`` to ``offset`` (``sync_every``, plus the chunks
received while a background sync ran) and feeds them to the checksum state at
``durable``: if the state it reaches is the recorded one, the bytes are the client's and
now synced; otherwise the record goes back to ``durable`` (the extra digests' states
are dropped, as a lost state is) and the client resends from there, as after any offset
mismatch.
"""

from __future__ import annotations

import functools
import hmac
import logging

from .checksums import ResumableHash, incremental_available
from .errors import ChunkyError
from .records import Upload
from .storage import ChunkStorage

logger = logging.getLogger("chunky_redis")
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


@functools.cache
def host_boot_id() -> str:
    """This host's boot id: it changes at every boot, so bytes left unsynced by a host that
    crashed carry a boot id no running process has. Without Linux's, a fixed one."""
    try:
        with open(BOOT_ID_PATH) as f:
            return f.read().strip() or "unknown"
    except OSError:
        return "unknown"


def unsure(upload: Upload, boot: str) -> bool:
    """Whether the record counts bytes that were never synced, written on another boot."""
    return bool(upload.boot) and upload.boot != boot and upload.offset > upload.durable


def reported(upload: Upload, boot: str) -> Upload:
    """What a status read may tell: no offset past the bytes it knows to be on disk."""
    if unsure(upload, boot):
        upload.offset, upload.hash_state = upload.durable, upload.durable_state
    return upload


def tail_matches(storage: ChunkStorage, upload: Upload) -> bool:
    """Sync the unsure bytes and check them against the recorded checksum state."""
    if not upload.hash_state or not incremental_available(upload.algorithm):
        return False  # nothing to check them against
    try:
        storage.sync(upload.upload_id)
        hasher = ResumableHash(upload.algorithm, upload.durable_state or None)
        length = upload.offset - upload.durable
        read = storage.feed(upload.upload_id, upload.durable, length, hasher.update)
    except (ChunkyError, OSError, NotImplementedError) as e:
        logger.warning("chunky_redis: unsynced bytes of %s unreadable: %s", upload.upload_id, e)
        return False
    if read != length:
        return False
    ours = hasher.hexdigest()
    return hmac.compare_digest(ours, ResumableHash(upload.algorithm, upload.hash_state).hexdigest())
