"""A concatenated upload (tus concatenation): its bytes are written from its parts in the worker.

The upload's record lists its parts (``extra[CONCAT_PARTS]``) and carries no digest yet: the
worker writes the parts' bytes, in order, as the upload's own, computing the digest as they
go (so the verification that follows reads nothing again), and records it. Once the upload is
complete, the parts go. Every step is safe to repeat after a crash.
"""

from __future__ import annotations

import logging
import secrets

from django.core.files.storage import Storage

from ..core.checksums import ResumableHash, incremental_available
from ..core.errors import ChunkFileMissing
from ..core.storage import ChunkStorage
from ..core.store import CONCAT_PARTS, PROCESSING, Upload, UploadStore
from .handoff import final_name_for

logger = logging.getLogger("chunky_redis")


def parts_of(upload: Upload) -> list[str]:
    parts = upload.extra.get(CONCAT_PARTS) or []
    return [str(part) for part in parts]


def assemble(upload: Upload, store: UploadStore, chunks: ChunkStorage, final: Storage) -> str:
    """Write a concatenated upload's bytes from its parts; '' when done (or not needed), else
    why it cannot be. Fills in ``upload.checksum`` (and the digest state) as recorded."""
    parts = parts_of(upload)
    if not parts or (upload.checksum and chunks.size(upload.upload_id) == upload.size):
        return ""  # not a concatenation, or assembled by an earlier attempt
    if chunks.size(upload.upload_id) is None and _handed_off(upload, final):
        return ""  # an earlier attempt got further: the file is in the final storage
    algorithm = upload.algorithm
    hasher = ResumableHash(algorithm) if incremental_available(algorithm) else None
    try:
        written = chunks.concatenate(upload.upload_id, parts, hasher.update if hasher else _skip)
    except ChunkFileMissing:
        return "A part of this concatenation is missing (terminated or expired)."
    if written != upload.size:
        return f"The parts hold {written} bytes, not the {upload.size} they had when concatenated."
    if hasher is not None:
        upload.checksum, upload.hash_state = hasher.hexdigest(), hasher.serialize()
    else:
        upload.checksum = chunks.digest(upload.upload_id, algorithm, upload.size)
    store.transition(
        upload.upload_id,
        PROCESSING,
        PROCESSING,
        checksum=upload.checksum,
        hash_state=upload.hash_state,
    )
    return ""


def remove_parts(upload: Upload, store: UploadStore, chunks: ChunkStorage) -> None:
    """The parts of a completed concatenation: records, then bytes (best effort: a part left
    behind expires and is swept like any abandoned upload)."""
    for part_id in parts_of(upload):
        token = secrets.token_hex(16)
        try:
            code, _ = store.acquire(part_id, upload.owner, token)
            if code == "ok" and store.terminate(part_id, token) == "ok":
                chunks.delete(part_id)
        except Exception:
            logger.warning("chunky_redis: part %s of %s left behind", part_id, upload.upload_id)


def _handed_off(upload: Upload, final: Storage) -> bool:
    names = {final_name_for(upload, final), final_name_for(upload, final, safe=True)}
    return any(final.exists(name) for name in names)


def _skip(_: bytes) -> None:
    pass
