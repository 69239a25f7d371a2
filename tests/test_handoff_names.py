"""Names in the final storage (chunky_redis/handoff.py) and the reasons shown for a
failure (finalize.public_reason), edge by edge: survivors of `make mutate`."""

from __future__ import annotations

import errno

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import FileSystemStorage

from chunky_redis.processing.finalize import public_reason
from chunky_redis.processing.handoff import (
    TEMP_SUFFIX,
    StorageTarget,
    _safe_name,
    is_name_refused,
    temp_name_for,
)


@pytest.mark.parametrize(
    ("filename", "safe"),
    [
        ("photo.JPG", "upload.JPG"),
        ("a.abcdefgh", "upload.abcdefgh"),  # the longest extension kept: 8 characters
        ("a.abcdefghi", "upload"),
        ("a.tar.gz", "upload.gz"),
        ("a.é", "upload"),
        ("a.a-b", "upload"),
        ("a.-b", "upload"),
        ("a.ü1", "upload"),
        ("no extension", "upload"),
    ],
)
def test_the_safe_name_keeps_only_a_plain_extension(filename, safe):
    assert _safe_name(filename) == safe


def test_the_temporary_name_is_hidden_beside_the_final_one_and_stable():
    name = "chunky_redis/abc/report.pdf"
    temp = temp_name_for(name)
    folder, _, base = temp.rpartition("/")
    assert folder == "chunky_redis/abc"
    assert base.startswith(".") and base.endswith(TEMP_SUFFIX)
    digest = base[1 : -len(TEMP_SUFFIX)]
    assert len(digest) == 24 and int(digest, 16) >= 0
    assert temp_name_for(name) == temp  # the next attempt finds a dead one's leftover
    assert temp_name_for("chunky_redis/abc/other.pdf") != temp
    # A name that is not valid UTF-8 (a lone surrogate from the filesystem) still has one.
    assert temp_name_for("chunky_redis/abc/bad\udcff.bin").endswith(TEMP_SUFFIX)


def test_refused_names_are_told_from_other_failures():
    assert is_name_refused(SuspiciousFileOperation("..")) is True
    assert is_name_refused(UnicodeEncodeError("utf-8", "x", 0, 1, "bad")) is True
    assert is_name_refused(OSError(errno.ENAMETOOLONG, "File name too long")) is True
    assert is_name_refused(OSError(errno.ENOSPC, "No space left")) is False
    assert is_name_refused(RuntimeError("boom")) is False


def test_public_reasons_hide_server_paths():
    error = RuntimeError("cannot open /srv/media/chunky_redis/x.bin for writing")
    assert public_reason(error) == "RuntimeError: cannot open <path> for writing"
    assert public_reason(ValueError()) == "ValueError"
    assert public_reason(OSError(errno.ENOSPC, "No space left on device")) == (
        "No space left on device"
    )


def test_an_s3_final_storage_adopts_only_its_own_bucket_s_objects_by_name():
    """The S3 chunk storage completed its object in the bucket: an S3 final storage takes
    it by its name under the storage's location, without copying; any other object is not its."""
    from storages.backends.s3 import S3Storage

    final = S3Storage(
        bucket_name="final", location="media", access_key="a", secret_key="s", region_name="x"
    )
    target = StorageTarget(final)
    key = "media/chunky_redis/abc/report.pdf"
    assert target.adopt_object("final", key) == "chunky_redis/abc/report.pdf"
    assert target.adopt_object("other", key) is None
    assert target.adopt_object("final", "elsewhere/report.pdf") is None
    assert StorageTarget(FileSystemStorage()).adopt_object("final", key) is None
