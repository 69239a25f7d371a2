"""``python -m bench.s3_handoff``: finalizing 1 GiB into S3 (moto on loopback) next to the disk.

Each row hands one chunk file to a final storage in a fresh process
(tests/support/handoff_probe.py) and records the seconds and the growth of that
process's peak RSS. Ratios are against the streamed copy measured in the same run:

  rename    FileSystemStorage on the chunk file's volume: os.replace, no bytes move
  copy      a FileSystemStorage saved through: a streamed Storage.save
  s3        django-storages' S3Storage with its defaults (boto3: 8 MiB parts, 10 threads)
  s3-lean   S3Storage with the README's AWS_S3_TRANSFER_CONFIG (4 threads, 4 parts read ahead)

moto keeps the object in its own process and checks nothing a real S3 would
throttle on, so the S3 rows measure our side (reading, hashing, HTTP) plus moto's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.handoff_probe import write_source
from tests.support.s3 import CREDENTIALS, LocalS3

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "s3-handoff"
BUCKET = "chunky-bench"
MiB = 1 << 20
TARGETS = {
    "rename": ["--target", "rename"],
    "copy": ["--target", "copy"],
    "s3": ["--target", "s3"],
    "s3-lean": ["--target", "s3", "--lean"],
}


def run(target: str, size: int, work: str, s3: LocalS3) -> dict:
    source = os.path.join(work, "upload.part")
    write_source(source, size)
    media = os.path.join(work, "media")
    args = [sys.executable, "-m", "tests.support.handoff_probe", source, *TARGETS[target]]
    args += ["--endpoint", s3.endpoint_url, "--bucket", BUCKET, "--media", media]
    args += ["--name", f"chunky_redis/{target}/upload.bin"]
    out = subprocess.run(
        args, cwd=REPO, env={**os.environ, **CREDENTIALS}, capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(out.stderr)
    shutil.rmtree(media, ignore_errors=True)
    if os.path.exists(source):
        os.unlink(source)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    size = args.size_mib * MiB
    s3 = LocalS3().start()
    work = tempfile.mkdtemp(prefix="chunky-bench-s3-")
    try:
        s3.client().create_bucket(Bucket=BUCKET)
        rows = {target: run(target, size, work, s3) for target in TARGETS}
    finally:
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    base = rows["copy"]["seconds"]
    for row in rows.values():
        row["vs_copy"] = row["seconds"] / base
        row["mib_per_s"] = size / MiB / max(row["seconds"], 1e-3)  # a rename: "1 ms"
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"size": size, "python": platform.python_version(), "cpus": os.cpu_count()}
    (RESULTS / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        f"Finalizing {size // MiB} MiB (one run; moto on loopback; {os.cpu_count()} CPUs shared)",
        "",
        "| hand-off | seconds | x streamed copy | MiB/s | peak RSS growth (MiB) |",
        "|---|---|---|---|---|",
    ]
    for target, row in rows.items():
        lines.append(
            f"| {target} | {row['seconds']:.2f} | {row['vs_copy']:.2f} | "
            f"{row['mib_per_s']:.0f} | {row['peak_rss_growth'] / MiB:.0f} |"
        )
    (RESULTS / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
