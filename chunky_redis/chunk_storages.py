"""The final storage, and the S3 chunk storage built from it (CHUNKY_REDIS_CHUNK_STORAGE = "s3").

The S3 chunk storage uses the final storage's bucket, location, endpoint and
credentials (django-storages' ``S3Storage`` settings), so that the multipart
upload it fills is completed into the final object where it lies.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage, storages
from django.utils.module_loading import import_string

from .conf import conf
from .core import s3parts
from .core.s3 import S3ChunkStorage

FILESYSTEM, S3 = "filesystem", "s3"
CHUNK_STORAGES = (FILESYSTEM, S3)
# The incomplete parts and the facts of uploads in progress, under the final storage's location.
WORK_FOLDER = "chunky_redis-uploading/"
# ``{filename}`` in the final name template: the key is fixed before the client names the file.
OBJECT_STEM = "upload"

_built: dict[tuple[Any, ...], S3ChunkStorage] = {}
_built_lock = threading.Lock()


def get_final_storage() -> Storage:
    name = conf.FINAL_STORAGE
    if not name:
        return storages["default"]
    if "." in name:
        storage: Storage = import_string(name)()
        return storage
    return storages[name]


def is_s3(storage: Storage) -> bool:
    """Whether ``storage`` is django-storages' S3Storage (or a subclass)."""
    try:
        from storages.backends.s3 import S3Storage
    except ImportError:
        return False
    return isinstance(storage, S3Storage)


def part_size() -> int:
    return conf.S3_PART_SIZE or s3parts.choose_part_size(conf.MAX_BYTES)


def object_name(upload_id: str) -> str:
    """The upload's name in the final storage while and after it is uploaded."""
    return conf.FINAL_NAME_TEMPLATE.format(upload_id=upload_id, filename=OBJECT_STEM)


def s3_key(storage: Any, name: str) -> str:
    """The key of ``name`` in an S3Storage, as its ``_save()`` computes it."""
    from storages.utils import clean_name

    return str(storage._normalize_name(clean_name(name)))


def s3_name(storage: Storage, bucket: str, key: str) -> str | None:
    """The name in ``storage`` of the object ``bucket``/``key``; None when it has none."""
    if not is_s3(storage):
        return None
    options: Any = storage
    location = options.location.strip("/")
    name = key[len(location) + 1 :] if location else key
    if options.bucket_name != bucket or not name or s3_key(storage, name) != key:
        return None
    return name


def s3_chunk_storage() -> S3ChunkStorage:
    """One per final storage's bucket, location and endpoint, per process (its client is reused)."""
    final = get_final_storage()
    if not is_s3(final):
        raise ImproperlyConfigured(
            'CHUNKY_REDIS_CHUNK_STORAGE = "s3" needs a django-storages S3Storage as '
            "CHUNKY_REDIS_FINAL_STORAGE (chunky_redis.E062)."
        )
    options: Any = final
    key = (
        os.getpid(),
        type(final),
        options.bucket_name,
        options.location,
        options.endpoint_url,
        part_size(),
        conf.FINAL_NAME_TEMPLATE,
    )
    with _built_lock:
        built = _built.get(key)
        if built is None:
            if len(_built) > 16:  # settings changed many times (tests): start afresh
                _built.clear()
            built = S3ChunkStorage(
                options.connection.meta.client,
                options.bucket_name,
                object_key=lambda upload_id: s3_key(options, object_name(upload_id)),
                work_prefix=options._normalize_name(WORK_FOLDER.rstrip("/")) + "/",
                part_size=part_size(),
            )
            _built[key] = built
    return built
