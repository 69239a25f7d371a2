"""One hand-off in a fresh process, measured: ``python -m tests.support.handoff_probe``.

Hands a chunk file to a final storage with chunky_redis.processing.handoff.hand_off and
prints one JSON line: seconds, the stored name, and how far the process's peak
RSS grew during the hand-off (VmHWM, reset through /proc/self/clear_refs just
before it, after the libraries and the storage's client are loaded).

  --target s3      django-storages' S3Storage at --endpoint, bucket --bucket
  --target rename  a FileSystemStorage on the chunk file's volume (os.replace)
  --target copy    a FileSystemStorage that customises _save: a streamed save
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time

MiB = 1 << 20


def write_source(path: str, size: int) -> str:
    """``size`` bytes in which every MiB differs (a reordered part would show); returns the md5."""
    block = os.urandom(MiB)
    digest = hashlib.md5()
    with open(path, "wb") as f:
        for i in range(size // MiB):
            piece = i.to_bytes(8, "big") + block[8:]
            f.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def lean_transfer_config():
    """8 MiB parts, 4 in flight, at most 4 read ahead: about 32 MiB of file in memory."""
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(multipart_chunksize=8 << 20, max_concurrency=4)
    config.max_in_memory_upload_chunks = 4  # s3transfer's read-ahead; boto3 does not expose it
    return config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path", help="the chunk file (consumed, as finalization does)")
    parser.add_argument("--target", choices=["s3", "rename", "copy"], required=True)
    parser.add_argument("--name", default="chunky_redis/probe/big.bin")
    parser.add_argument("--endpoint", default="")
    parser.add_argument("--bucket", default="")
    parser.add_argument("--media", default="", help="the FileSystemStorage's location")
    parser.add_argument(
        "--lean", action="store_true", help="S3: the README's leaner AWS_S3_TRANSFER_CONFIG"
    )
    args = parser.parse_args()

    from django.conf import settings

    settings.configure(
        AWS_S3_ENDPOINT_URL=args.endpoint or None,
        AWS_STORAGE_BUCKET_NAME=args.bucket,
        AWS_S3_REGION_NAME="us-east-1",
    )
    import django

    django.setup()
    from django.core.files.base import ContentFile
    from django.core.files.storage import FileSystemStorage

    from chunky_redis.core.filesystem import FileSystemChunkStorage
    from chunky_redis.processing.handoff import ChunkFile, hand_off

    if args.target == "s3":
        from storages.backends.s3 import S3Storage

        final = S3Storage(transfer_config=lean_transfer_config() if args.lean else None)
        final.save("chunky_redis/probe/warm-up", ContentFile(b"x"))  # load boto3's machinery
    elif args.target == "rename":
        final = FileSystemStorage(location=args.media)
    else:

        class SavedThrough(FileSystemStorage):
            def _save(self, name, content):
                return super()._save(name, content)

        final = SavedThrough(location=args.media)

    reset = _reset_peak()
    before = _kib("VmRSS") if reset else _kib("VmHWM")
    started = time.perf_counter()
    # The chunk file as finalization sees it: <upload_id>.part in a chunk directory.
    directory, filename = os.path.split(os.path.abspath(args.path))
    upload_id, suffix = os.path.splitext(filename)
    assert suffix == ".part", "the chunk file must be named <upload_id>.part"
    chunk = ChunkFile(FileSystemChunkStorage(directory, fsync=False), upload_id)
    stored = hand_off(chunk, final, args.name)
    seconds = time.perf_counter() - started
    growth = max(0, _kib("VmHWM") - before) * 1024
    print(json.dumps({"name": stored, "seconds": seconds, "peak_rss_growth": growth}))


if __name__ == "__main__":
    main()
