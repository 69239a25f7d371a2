"""S3 multipart arithmetic: which part a byte falls in, and how large parts must be. No Django here.

S3's rules: every part but the last holds at least 5 MiB, a part at most 5 GiB, an
upload at most 10,000 parts. Parts here all have one size (the upload's ``part_size``)
except the last, so part ``n`` (from 1) always covers the same bytes whatever size
the client's chunks have: ``[(n - 1) * part_size, n * part_size)``. That is what
lets a retried chunk re-send a part under its number and replace it.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MiB


def part_number(offset: int, part_size: int) -> int:
    """The number (from 1) of the part that holds byte ``offset``."""
    return offset // part_size + 1


def part_start(offset: int, part_size: int) -> int:
    """Where the part holding byte ``offset`` begins."""
    return offset - offset % part_size


def parts_count(size: int, part_size: int) -> int:
    """How many parts an upload of ``size`` bytes completes with (0 for an empty one)."""
    return -(-size // part_size)


def last_part_size(size: int, part_size: int) -> int:
    """The size of the last part (every other one is ``part_size``)."""
    return size - (parts_count(size, part_size) - 1) * part_size if size else 0


def max_upload_size(part_size: int) -> int:
    """The largest upload whose parts fit in S3's 10,000."""
    return part_size * MAX_PARTS


def choose_part_size(max_bytes: int | None, preferred: int = DEFAULT_PART_SIZE) -> int:
    """``preferred``, or larger when ``max_bytes`` would need more than 10,000 parts of it.

    Rounded up to a whole MiB. A part is held in memory while it fills, so a larger part
    costs memory per chunk in flight; without ``max_bytes`` the preferred size stands and
    uploads are limited to 10,000 of its parts.
    """
    size = max(preferred, MIN_PART_SIZE)
    if max_bytes is not None and max_bytes > max_upload_size(size):
        needed = -(-max_bytes // MAX_PARTS)
        size = -(-needed // MiB) * MiB
    return size


@dataclass(frozen=True)
class MultipartUpload:
    """An upload's S3 multipart upload: its id, and the part size it was begun with."""

    s3_upload_id: str
    part_size: int
