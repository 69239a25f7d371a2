"""What a chunk storage holds for an upload in progress, as the protocol, race and crash
suites check it: the same questions for the shared directory and for S3.

S3 shows no part of a multipart upload before it completes; its ETag is the md5 of
the part, so "does it hold these bytes" is answered part by part, and the incomplete
part is read from its chain of tail objects.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chunky_redis import runtime
from chunky_redis.chunk_storages import get_final_storage
from chunky_redis.core.s3 import S3ChunkStorage
from chunky_redis.core.s3parts import part_start

from .s3 import CREDENTIALS, LocalS3

BUCKET = "chunky-chunks"
TEST_PART_SIZE = 64 * 1024  # moto runs with this as its minimum part size (S3's is 5 MiB)
STORAGES = ["filesystem", "s3"]


def start_local_s3() -> LocalS3:
    s3 = LocalS3(env={"S3_UPLOAD_PART_MIN_SIZE": str(TEST_PART_SIZE)}).start()
    s3.client().create_bucket(Bucket=BUCKET)
    return s3


def use_s3_chunks(settings: Any, s3: LocalS3) -> None:
    """Chunks and final objects in the local S3, under a location of this test's own."""
    for key, value in s3.django_settings(BUCKET).items():
        setattr(settings, key, value)
    settings.AWS_S3_ACCESS_KEY_ID = CREDENTIALS["AWS_ACCESS_KEY_ID"]
    settings.AWS_S3_SECRET_ACCESS_KEY = CREDENTIALS["AWS_SECRET_ACCESS_KEY"]
    settings.AWS_LOCATION = f"t-{uuid.uuid4().hex[:12]}"
    settings.CHUNKY_REDIS_FINAL_STORAGE = "storages.backends.s3.S3Storage"
    settings.CHUNKY_REDIS_CHUNK_STORAGE = "s3"
    settings.CHUNKY_REDIS_S3_PART_SIZE = TEST_PART_SIZE


@dataclass
class FileChunks:
    upload_dir: Path

    def names(self) -> list[str]:
        return sorted(p.name for p in self.upload_dir.iterdir()) if self.upload_dir.exists() else []

    def holds(self, upload_id: str, data: bytes) -> bool:
        return (self.upload_dir / f"{upload_id}.part").read_bytes() == data

    def exists(self, upload_id: str) -> bool:
        return (self.upload_dir / f"{upload_id}.part").exists()

    def fingerprint(self, upload_id: str) -> object:
        return (self.upload_dir / f"{upload_id}.part").read_bytes()


@dataclass
class S3Chunks:
    storage: S3ChunkStorage

    def names(self) -> list[str]:
        return sorted(f"{upload_id}.part" for upload_id in self.storage.iter_ids())

    def holds(self, upload_id: str, data: bytes) -> bool:
        upload = self.storage.multipart(upload_id, cached=False)
        assert upload is not None, f"upload {upload_id} has no multipart upload"
        size = upload.part_size
        parts = self.storage._parts(upload_id, upload)
        base = part_start(len(data), size)
        for number in range(1, base // size + 1):
            piece = data[(number - 1) * size : number * size]
            if parts.get(number, ("", 0))[0].strip('"') != hashlib.md5(piece).hexdigest():
                return False
        return self.storage.read_tail(upload_id, base, len(data)) == data[base:]

    def exists(self, upload_id: str) -> bool:
        """Whether it is still an upload in progress (a completed one is the final object)."""
        return any(self.storage._keys(self.storage.work_key(upload_id)))

    def fingerprint(self, upload_id: str) -> object:
        upload = self.storage.multipart(upload_id, cached=False)
        assert upload is not None
        parts = self.storage._parts(upload_id, upload)
        prefix = self.storage.work_key(upload_id)
        work = sorted((o["Key"], o["ETag"]) for o in self.storage._objects(prefix))
        return sorted(parts.items()), work


def chunk_view(settings: Any) -> FileChunks | S3Chunks:
    """The view of the chunk storage the settings choose."""
    storage = runtime.get_storage()
    if isinstance(storage, S3ChunkStorage):
        return S3Chunks(storage)
    return FileChunks(Path(settings.CHUNKY_REDIS_UPLOAD_DIR))


def final_bytes(name: str) -> bytes:
    """A finished file's bytes, from the final storage (a directory or the bucket)."""
    with get_final_storage().open(name, "rb") as f:
        return bytes(f.read())
