"""``python -m bench.s3_chunks``: uploading 1 GiB with S3 chunks next to the shared directory.

One process drives the core's UploadService (no HTTP: what differs is the chunk
storage) with 8 MiB chunks written in 1 MiB blocks, on a real Redis, the final
storage being S3 in both rows (moto on loopback, its own process):

  filesystem  chunks in a local directory; completion streams the file into S3 (boto3's
              managed multipart upload, the lean config of docs/howto/s3.md)
  s3          chunks straight into the S3 multipart upload; completion is S3's
              CompleteMultipartUpload (plus the last, short part)

Throughput is the upload's (every chunk recorded), completion the seconds from the
client's completion to the object at its final name. Ratios are against the
filesystem row of the same run. moto keeps every part in its own memory and checks
nothing a real S3 would throttle on: the S3 row measures our side plus moto's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import redis

from chunky_redis.core.filesystem import FileSystemChunkStorage
from chunky_redis.core.http import ByteRange
from chunky_redis.core.s3 import S3ChunkStorage
from chunky_redis.core.storage import ChunkStorage, FinalTarget
from chunky_redis.core.store import UploadStore
from chunky_redis.core.uploads import Policy, UploadService
from tests.support.s3 import LocalS3

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "s3-chunks"
BUCKET = "chunky-bench-chunks"
MiB = 1 << 20


class S3Final(FinalTarget):
    """The final storage: the same bucket (S3 chunks complete in place; a file is streamed)."""

    def __init__(self, client: Any):
        from boto3.s3.transfer import TransferConfig

        self.client = client
        self.config = TransferConfig(multipart_chunksize=8 * MiB, max_concurrency=4)
        self.config.max_in_memory_upload_chunks = 4

    def adopt(self, path: str, name: str) -> str | None:
        return None

    def adopt_object(self, bucket: str, key: str) -> str | None:
        return key if bucket == BUCKET else None

    def save(self, name: str, stream: BinaryIO) -> str:
        self.client.upload_fileobj(stream, BUCKET, name, Config=self.config)
        return name


def upload(service: UploadService, size: int, chunk: int, block: bytes) -> tuple[str, str]:
    """Send ``size`` bytes; returns the upload id and the md5 of what was sent."""
    md5 = hashlib.md5()
    upload_id: str | None = None
    for start in range(0, size, chunk):
        end = min(start + chunk, size) - 1
        session = service.start_chunk(
            owner="",
            upload_id=upload_id,
            byte_range=ByteRange(start, end, size),
            length=end - start + 1,
            max_bytes=None,
        )
        left = end - start + 1
        while left:
            piece = block[: min(len(block), left)]
            session.write(piece)
            md5.update(piece)
            left -= len(piece)
        upload_id = session.finish(filename="big.bin").upload_id
    assert upload_id is not None
    return upload_id, md5.hexdigest()


def run(name: str, storage: ChunkStorage, store: UploadStore, final: S3Final, size: int) -> dict:
    service = UploadService(
        store=store, storage=storage, policy=Policy(), on_complete=lambda u: None
    )
    block = os.urandom(MiB)
    began = time.perf_counter()
    upload_id, md5 = upload(service, size, 8 * MiB, block)
    uploaded = time.perf_counter()
    service.complete(owner="", upload_id=upload_id, checksum=md5)
    storage.truncate(upload_id, size)
    s3_side = _timed(final.client, "complete_multipart_upload")
    try:
        stored = storage.move_into(upload_id, final, f"chunky_redis/{name}/{upload_id}")
    finally:
        del final.client.complete_multipart_upload  # the client's own method again
    done = time.perf_counter()
    head = final.client.head_object(Bucket=BUCKET, Key=stored)
    assert head["ContentLength"] == size, head
    final.client.delete_object(Bucket=BUCKET, Key=stored)
    return {
        "upload_s": uploaded - began,
        "completion_s": done - uploaded,
        "complete_multipart_s": s3_side[0],
    }


def _timed(client: Any, method: str) -> list[float]:
    """Time ``client.method`` (S3's own step: moto assembles the object in Python)."""
    spent = [0.0]
    real = getattr(client, method)

    def timed(**kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return real(**kwargs)
        finally:
            spent[0] += time.perf_counter() - began

    setattr(client, method, timed)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument(
        "--redis-url", default=os.environ.get("CHUNKY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    )
    args = parser.parse_args()
    size = args.size_mib * MiB
    client = redis.Redis.from_url(args.redis_url)
    prefix = f"chunky-bench-{uuid.uuid4().hex[:8]}"
    store = UploadStore(client, prefix=prefix)
    s3 = LocalS3().start()  # S3's own 5 MiB minimum part
    work = tempfile.mkdtemp(prefix="chunky-bench-s3chunks-")
    try:
        s3_client = s3.client()
        s3_client.create_bucket(Bucket=BUCKET)
        final = S3Final(s3_client)
        storages: dict[str, ChunkStorage] = {
            "filesystem": FileSystemChunkStorage(work, fsync=True),
            "s3": S3ChunkStorage(
                s3_client,
                BUCKET,
                object_key=lambda upload_id: f"chunky_redis/s3/{upload_id}",
                work_prefix="chunky_redis-uploading/",
            ),
        }
        rows = {name: run(name, storage, store, final, size) for name, storage in storages.items()}
    finally:
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
    base = rows["filesystem"]
    for row in rows.values():
        row["upload_mib_per_s"] = size / MiB / row["upload_s"]
        row["upload_vs_filesystem"] = row["upload_s"] / base["upload_s"]
        row["completion_vs_filesystem"] = row["completion_s"] / base["completion_s"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"size": size, "python": platform.python_version(), "cpus": os.cpu_count()}
    (RESULTS / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        f"Uploading {size // MiB} MiB in 8 MiB chunks, then completing into S3 "
        f"(one run; moto on loopback; {os.cpu_count()} CPUs shared)",
        "",
        "| chunk storage | upload s | MiB/s | x filesystem | completion s | x filesystem "
        "| of which CompleteMultipartUpload s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['upload_s']:.1f} | {row['upload_mib_per_s']:.0f} | "
            f"{row['upload_vs_filesystem']:.2f} | {row['completion_s']:.2f} | "
            f"{row['completion_vs_filesystem']:.3f} | {row['complete_multipart_s']:.2f} |"
        )
    (RESULTS / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
