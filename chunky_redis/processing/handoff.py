"""Putting a verified upload into the final (Django) storage, under its final name.

The final name shows a file only when it is whole: on the upload directory's
own volume the chunk file is renamed there; into another directory that the
storage keeps on disk it is saved under a temporary name beside the final one
and renamed; into a remote storage (S3 and the like) it is saved through the
storage, whose objects appear only once written whole.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
from typing import BinaryIO, NamedTuple, TypeGuard

from django.core.exceptions import SuspiciousFileOperation
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage
from django.core.files.utils import validate_file_name

from ..chunk_storages import s3_name
from ..conf import conf
from ..core.http import fit_bytes
from ..core.storage import ChunkStorage, FinalTarget
from ..core.store import Upload

# NAME_MAX is 255 bytes on common filesystems (ext4, xfs, APFS counts UTF-8 bytes
# too); this leaves room for the "_<7 characters>" a storage appends to make a
# name unique, and for object stores that count the whole key.
MAX_NAME_BYTES = 200
SAFE_STEM = "upload"
# What a refused name looks like: too long, or characters the storage rejects.
_NAME_ERRNOS = {errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ}
TEMP_SUFFIX = ".chunky-partial"


def final_name_for(upload: Upload, storage: Storage, *, safe: bool = False) -> str:
    """The upload's name in the final storage: the same for every attempt.

    The client's filename is cleaned the way the storage cleans FileField
    names, so that names like ".." can never leave the upload's own folder,
    and cut by bytes. ``safe`` gives the name used when the storage refuses
    that one: "upload" plus the extension when it is plain ASCII.
    """
    filename = SAFE_STEM
    try:
        if upload.filename:
            cleaned = storage.get_valid_name(os.path.basename(upload.filename))
            filename = fit_bytes(cleaned, MAX_NAME_BYTES) if not safe else _safe_name(cleaned)
    except (SuspiciousFileOperation, UnicodeError):
        filename = SAFE_STEM
    name = conf.FINAL_NAME_TEMPLATE.format(upload_id=upload.upload_id, filename=filename)
    validate_file_name(name, allow_relative_path=True)
    return name


def _safe_name(filename: str) -> str:
    ext = os.path.splitext(filename)[1]
    plain = ext[1:].isascii() and ext[1:].isalnum() and len(ext) <= 9
    return SAFE_STEM + ext if plain else SAFE_STEM


def is_name_refused(error: BaseException) -> bool:
    """Did the storage refuse the name itself (rather than fail for another reason)?"""
    if isinstance(error, (SuspiciousFileOperation, UnicodeError)):
        return True
    return isinstance(error, OSError) and error.errno in _NAME_ERRNOS


def temp_name_for(name: str) -> str:
    """The temporary name a save goes to before it is renamed to ``name``.

    Beside the final name (so the rename stays on one volume), hidden, short
    whatever ``name``'s length, and the same for every attempt, so that the
    next attempt finds and removes what a dead one left.
    """
    # (codec names ignore letter case: a mutant's "UTF-8" is the same codec)
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[
        :24
    ]  # pragma: no mutate
    return posixpath.join(posixpath.dirname(name), f".{digest}{TEMP_SUFFIX}")


class ChunkFile(NamedTuple):
    """An upload's bytes in the chunk storage: what a hand-off moves."""

    storage: ChunkStorage
    upload_id: str


def hand_off(chunk: ChunkFile, final: Storage, name: str) -> str:
    """Move the upload's bytes into the final storage; returns the stored name.

    The name contains the upload id, so it is ours alone: a file left at it
    by an attempt that died before recording it is replaced, never kept
    beside a renamed copy.
    """
    return chunk.storage.move_into(chunk.upload_id, StorageTarget(final), name)


class StorageTarget(FinalTarget):
    """A Django storage as the place where complete uploads go."""

    def __init__(self, final: Storage):
        self.final = final

    def adopt(self, path: str, name: str) -> str | None:
        final = self.final
        if not _can_rename(final, path):
            return None
        target = final.path(name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            os.replace(path, target)  # atomic on one volume: no copy, no window
        except OSError as e:
            # Two mounts of one filesystem (Docker volumes, Kubernetes subPath) share
            # st_dev yet refuse a rename between them: save through the storage instead.
            if e.errno != errno.EXDEV:
                raise
            return None
        if final.file_permissions_mode is not None:
            os.chmod(target, final.file_permissions_mode)
        return name

    def adopt_object(self, bucket: str, key: str) -> str | None:
        # The S3 chunk storage completed its multipart upload into this storage's bucket.
        return s3_name(self.final, bucket, key)

    def save(self, name: str, stream: BinaryIO) -> str:
        if _local_path(self.final, name) is None:
            # A remote object appears only when whole: S3 shows a multipart upload's object
            # only at CompleteMultipartUpload. A worker killed mid-upload leaves an invisible
            # incomplete upload (the bucket's lifecycle rule removes it, see the README) and
            # the chunk file, deleted by the caller only once the save returned, for the retry.
            return _save(self.final, stream, name)
        return _save_then_rename(self.final, stream, name)


def _save(final: Storage, stream: BinaryIO, name: str) -> str:
    if final.exists(name):
        final.delete(name)
    # Storage.save streams File objects chunk by chunk; nothing is loaded whole.
    return final.save(name, File(stream, name=os.path.basename(name)))


def _save_then_rename(final: Storage, stream: BinaryIO, name: str) -> str:
    """Save through the storage under the temporary name, then rename it into place."""
    temp = _save(final, stream, temp_name_for(name))  # removes a dead attempt's leftover first
    try:
        # Within one directory, so within one mount. POSIX rename(2) replaces the
        # target atomically, as os.replace does (this code is POSIX-only already).
        os.rename(final.path(temp), final.path(name))
    except BaseException:
        final.delete(temp)
        raise
    return name


def _local_path(final: Storage, name: str) -> str | None:
    try:
        return final.path(name)
    except NotImplementedError:
        return None


def _can_rename(final: Storage, path: str) -> TypeGuard[FileSystemStorage]:
    if not isinstance(final, FileSystemStorage):
        return False
    if type(final)._save is not FileSystemStorage._save:  # type: ignore[attr-defined]  # private: not in django-stubs
        return False  # a storage that customises saving must be saved through
    location = final.location
    os.makedirs(location, exist_ok=True)
    return os.stat(location).st_dev == os.stat(path).st_dev
