"""The chunk storage on S3: chunks go straight into a multipart upload. No Django here.

For deployments without a shared volume: web and Celery workers share only Redis
and the bucket. The object being uploaded is the final object; completion is S3's
CompleteMultipartUpload (no copy). What the multipart upload needs between
requests lives in the bucket, beside it, under ``<work_prefix><upload_id>/``:

- ``upload.json``: the S3 multipart upload id and the part size, written once when
  the upload is created (the part size is the upload's own: changing the setting
  never changes an upload in progress);
- ``tail/<end>``: the *incomplete part*, the bytes past the last full part. S3 wants
  5 MiB parts, clients may send 64 KiB chunks: a chunk that does not fill its part
  is stored as one small object named after the offset it ends at, whose metadata
  says where it starts; the chain of them from the recorded offset back to the part
  boundary is the part's beginning. The chunk that fills the part reads the chain
  (under the upload's lock, so no other writer changes it), prepends it and uploads
  the part. Each byte is thus stored once as a tail and read back once: small chunks
  cost one small PUT each, not a rewrite of a growing tail;
- ``length``: the length to complete with (``truncate()`` writes it at finalization).

Why the bucket and not the Redis record: the record's fields and scripts are the
store's (the offset and the checksum state advance in one Lua step), and the state
here must agree with *that* offset whatever happens between a part's upload and the
commit. It does by construction: a part always covers the same bytes (see s3parts.py)
and a re-sent one replaces the old under its number; tails are named by the offset
they end at, so the chain read from the recorded offset never includes what a crashed
request wrote past it, and nothing the chain needs is deleted before a later offset
is recorded. The part list and ETags come from S3's ListParts at completion, which
always shows the last upload of each part number.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, cast

from . import s3parts
from .errors import ChunkFileMissing, ChunkyError, StorageError, TooLarge
from .s3bucket import BucketObjects, Readable, error_code, raise_storage_error, s3_errors
from .s3parts import MultipartUpload
from .s3writer import S3ChunkWriter
from .storage import ChunkStorage, FinalTarget

logger = logging.getLogger("chunky_redis")

_READ_BLOCK = 1 << 20
_DELETE_BATCH = 1000  # DeleteObjects' limit
_CACHED_UPLOADS = 4096


class S3ChunkStorage(BucketObjects, ChunkStorage):
    """Uploads in progress as S3 multipart uploads in ``bucket``.

    ``object_key(upload_id)`` is the key of the final object (where the multipart
    upload completes); ``work_prefix`` is where the incomplete parts and the upload's
    facts are kept until then; ``part_size`` is given to uploads created from now on.
    ``client`` is a boto3 S3 client (thread-safe).
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        object_key: Callable[[str], str],
        work_prefix: str,
        part_size: int = s3parts.DEFAULT_PART_SIZE,
    ):
        super().__init__(client, bucket)
        self.object_key = object_key
        self.work_prefix = work_prefix
        self.part_size = part_size
        self._known: OrderedDict[str, MultipartUpload] = OrderedDict()
        self._known_lock = threading.Lock()

    # -- keys ----------------------------------------------------------------
    def work_key(self, upload_id: str, name: str = "") -> str:
        return f"{self.work_prefix}{upload_id}/{name}"

    def tail_key(self, upload_id: str, end: int) -> str:
        # Zero-padded: listed in key order, tails come in offset order.
        return self.work_key(upload_id, f"tail/{end:015d}")

    # -- the upload's facts --------------------------------------------------
    def multipart(self, upload_id: str, *, cached: bool = True) -> MultipartUpload | None:
        """The upload's multipart upload, None when it has none (never created, or completed)."""
        if cached:
            with self._known_lock:
                known = self._known.get(upload_id)
            if known is not None:
                return known
        found = self._get(self.work_key(upload_id, "upload.json"))
        if found is None:
            return None
        facts = json.loads(found[0])
        if not facts.get("s3_upload_id"):
            return None  # a creation that died before S3 answered it
        upload = MultipartUpload(facts["s3_upload_id"], int(facts["part_size"]))
        with self._known_lock:
            self._known[upload_id] = upload
            while len(self._known) > _CACHED_UPLOADS:
                self._known.popitem(last=False)
        return upload

    def _create(self, upload_id: str) -> MultipartUpload:
        # The facts object first (without an id): should this request die after
        # S3 created the multipart upload, delete() still finds what to abort.
        facts_key = self.work_key(upload_id, "upload.json")
        pending = {"s3_upload_id": "", "part_size": self.part_size}
        self._call("create the upload", "put_object", Key=facts_key, Body=json.dumps(pending))
        reply = self._call(
            "create the upload", "create_multipart_upload", Key=self.object_key(upload_id)
        )
        upload = MultipartUpload(reply["UploadId"], self.part_size)
        facts = {"s3_upload_id": upload.s3_upload_id, "part_size": upload.part_size}
        self._call("create the upload", "put_object", Key=facts_key, Body=json.dumps(facts))
        return upload

    # -- writing ---------------------------------------------------------------
    def writer(
        self,
        upload_id: str,
        *,
        create: bool,
        start: int,
        limit: int | None,
        on_block: Callable[[bytes], None],
        heartbeat: Callable[[], None] | None = None,
        overflow: Callable[[], ChunkyError],
    ) -> S3ChunkWriter:
        if create:
            upload = self._create(upload_id)
        else:
            found = self.multipart(upload_id)
            if found is None:
                logger.error(
                    "chunky_redis: the multipart upload of upload %s is missing", upload_id
                )
                raise ChunkFileMissing()
            upload = found
        ceiling = s3parts.max_upload_size(upload.part_size)
        if limit is not None and start + limit > ceiling:
            raise TooLarge(start + limit, ceiling)  # before a byte is written
        return S3ChunkWriter(
            self,
            upload_id,
            upload,
            start=start,
            limit=limit,
            on_block=on_block,
            heartbeat=heartbeat,
            overflow=overflow,
        )

    def upload_part(
        self, upload_id: str, upload: MultipartUpload, number: int, body: bytes
    ) -> None:
        try:
            self.client.upload_part(
                Bucket=self.bucket,
                Key=self.object_key(upload_id),
                UploadId=upload.s3_upload_id,
                PartNumber=number,
                Body=body,
            )
        except s3_errors() as e:
            if error_code(e) == "NoSuchUpload":
                raise ChunkFileMissing() from e
            raise_storage_error(e, f"store part {number}")

    def put_tail(self, upload_id: str, start: int, end: int, body: bytes) -> None:
        self._call(
            "store the incomplete part",
            "put_object",
            Key=self.tail_key(upload_id, end),
            Body=body,
            Metadata={"start": str(start)},
        )

    def read_tail(self, upload_id: str, base: int, end: int) -> bytes:
        """The bytes ``[base, end)`` of the part beginning at ``base``, from the chain of tails."""
        pieces: list[bytes] = []
        while end > base:
            found = self._get(self.tail_key(upload_id, end))
            if found is None:
                logger.error("chunky_redis: upload %s lost the tail ending at %s", upload_id, end)
                raise ChunkFileMissing()
            body, metadata = found
            start = int(metadata.get("start", "-1"))
            if not base <= start < end or len(body) != end - start:
                raise StorageError(f"The incomplete part ending at {end} is damaged.")
            pieces.append(body)
            end = start
        return b"".join(reversed(pieces))

    def drop_stale_tails(self, upload_id: str, base: int, recorded: int) -> None:
        """Delete the tails no offset from ``recorded`` on can need: those of parts before
        ``base`` (uploaded), and those past ``recorded`` (a crashed request's)."""
        stale = [
            key
            for key in self._keys(self.work_key(upload_id, "tail/"))
            if not base < int(key.rsplit("/", 1)[1]) <= recorded
        ]
        self._delete_keys(stale)

    # -- reads -----------------------------------------------------------------
    def exists(self, upload_id: str) -> bool:
        if self._get(self.work_key(upload_id, "upload.json")) is not None:
            return True
        return self._head(self.object_key(upload_id)) is not None

    def size(self, upload_id: str) -> int | None:
        """At least the bytes recorded: the full parts in a row from part 1, or the end
        of the last tail, whichever is further; a completed object's own size."""
        upload = self.multipart(upload_id, cached=False)
        if upload is None:
            if self._get(self.work_key(upload_id, "upload.json")) is not None:
                return 0
            head = self._head(self.object_key(upload_id))
            return None if head is None else int(head["ContentLength"])
        parts = self._parts(upload_id, upload)
        full = 0
        while parts.get(full + 1, ("", 0))[1] == upload.part_size:
            full += 1
        tails = [int(k.rsplit("/", 1)[1]) for k in self._keys(self.work_key(upload_id, "tail/"))]
        return max([full * upload.part_size, *tails])

    def digest(self, upload_id: str, algorithm: str, length: int) -> str:
        """The digest of the object. S3 cannot read the parts of an upload in progress: one is
        completed first, but only once ``truncate()`` sealed its length as ``length``
        (finalization); before that, StorageError (never completed half-way)."""
        if self.multipart(upload_id, cached=False) is not None:
            if self._sealed_length(upload_id) != length:
                raise StorageError("An upload in progress on S3 cannot be read back.")
            self._finish(upload_id, length)
        reply = self._call("read the object", "get_object", Key=self.object_key(upload_id))
        hasher = hashlib.new(algorithm)
        body = reply["Body"]
        left = length
        while left > 0:
            block = body.read(min(_READ_BLOCK, left))
            if not block:
                break
            hasher.update(block)
            left -= len(block)
        body.close()
        return hasher.hexdigest()

    def concatenate(
        self, upload_id: str, part_ids: list[str], on_block: Callable[[bytes], None]
    ) -> int:
        """Not yet: the parts are multipart uploads in progress, which S3 cannot read back."""
        raise StorageError("Concatenating uploads is not supported with the S3 chunk storage.")

    def truncate(self, upload_id: str, size: int) -> None:
        """Record ``size`` as the length the upload completes with: bytes past it were
        never recorded and stay out of the object."""
        if self.multipart(upload_id, cached=False) is not None:
            self._call(
                "record the length",
                "put_object",
                Key=self.work_key(upload_id, "length"),
                Body=str(size),
            )

    # -- completion ----------------------------------------------------------------
    def move_into(self, upload_id: str, target: FinalTarget, name: str) -> str:
        key = self.object_key(upload_id)
        if self.multipart(upload_id, cached=False) is not None:
            length = self._sealed_length(upload_id)
            if length is None:
                raise StorageError("The upload's length was not recorded (truncate() first).")
            self._finish(upload_id, length)
        elif self._head(key) is None:
            raise ChunkFileMissing()
        self._forget(upload_id)
        adopted = target.adopt_object(self.bucket, key)
        if adopted is not None:
            return adopted
        # Another storage: stream the object there, then remove it from the bucket.
        reply = self._call("read the object", "get_object", Key=key)
        stored = target.save(name, cast(BinaryIO, Readable(reply["Body"])))
        self._call("remove the object", "delete_object", Key=key)
        return stored

    def _sealed_length(self, upload_id: str) -> int | None:
        found = self._get(self.work_key(upload_id, "length"))
        return None if found is None else int(found[0])

    def _finish(self, upload_id: str, size: int) -> None:
        """Complete the multipart upload with exactly ``size`` bytes; safe to repeat."""
        upload = self.multipart(upload_id, cached=False)
        if upload is None:
            return  # completed, and cleaned up
        key = self.object_key(upload_id)
        try:
            self._complete(upload_id, upload, size)
        except (ChunkFileMissing, StorageError):
            head = self._head(key)
            if head is None or int(head["ContentLength"]) != size:
                raise
            # A previous attempt completed it and died before cleaning up.

    def _complete(self, upload_id: str, upload: MultipartUpload, size: int) -> None:
        key, part_size = self.object_key(upload_id), upload.part_size
        if size == 0:  # S3 completes no upload without a part
            self._call("store the empty file", "put_object", Key=key, Body=b"")
            self._abort(key, {upload.s3_upload_id})
            return
        count = s3parts.parts_count(size, part_size)
        last = s3parts.last_part_size(size, part_size)
        if last < part_size:  # the last part is the incomplete one
            base = s3parts.part_start(size - 1, part_size)
            self.upload_part(upload_id, upload, count, self.read_tail(upload_id, base, size))
        parts = self._parts(upload_id, upload)
        for number in range(1, count + 1):
            expected = last if number == count else part_size
            if parts.get(number, ("", -1))[1] != expected:
                raise StorageError(f"Part {number} of the upload is missing or has another size.")
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload.s3_upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": parts[n][0]} for n in range(1, count + 1)]
                },
            )
        except s3_errors() as e:
            raise_storage_error(e, "complete the upload")

    def _parts(self, upload_id: str, upload: MultipartUpload) -> dict[int, tuple[str, int]]:
        """Part number -> (ETag, size), as S3 lists them now."""
        parts: dict[int, tuple[str, int]] = {}
        marker = 0
        while True:
            try:
                reply = self.client.list_parts(
                    Bucket=self.bucket,
                    Key=self.object_key(upload_id),
                    UploadId=upload.s3_upload_id,
                    PartNumberMarker=marker,
                )
            except s3_errors() as e:
                if error_code(e) == "NoSuchUpload":
                    return {}
                raise_storage_error(e, "list the parts")
            for part in reply.get("Parts", []):
                parts[int(part["PartNumber"])] = (part["ETag"], int(part["Size"]))
            if not reply.get("IsTruncated"):
                return parts
            marker = int(reply["NextPartNumberMarker"])

    # -- removal -------------------------------------------------------------------
    def delete(self, upload_id: str) -> bool:
        """Abort the multipart upload and remove the incomplete parts; never the completed object."""
        upload = self.multipart(upload_id, cached=False)
        keys = list(self._keys(self.work_key(upload_id)))
        ids = {upload.s3_upload_id} if upload else set()
        aborted = self._abort(self.object_key(upload_id), ids)
        self._delete_keys(keys)
        with self._known_lock:
            self._known.pop(upload_id, None)
        return bool(keys) or aborted

    def _forget(self, upload_id: str) -> None:
        """The upload completed: its work objects go, the facts last."""
        keys = [k for k in self._keys(self.work_key(upload_id)) if not k.endswith("/upload.json")]
        self._delete_keys(keys)
        self._delete_keys([self.work_key(upload_id, "upload.json")])
        with self._known_lock:
            self._known.pop(upload_id, None)

    def _abort(self, key: str, known: set[str]) -> bool:
        """Abort every multipart upload at ``key`` (one a creation's lost reply left included)."""
        found = set(known)
        reply = self._call("list the uploads", "list_multipart_uploads", Prefix=key)
        found.update(u["UploadId"] for u in reply.get("Uploads", []) if u["Key"] == key)
        for s3_upload_id in found:
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=s3_upload_id
                )
            except s3_errors() as e:
                if error_code(e) != "NoSuchUpload":
                    raise_storage_error(e, "abort the upload")
        return bool(found)

    def iter_ids(self, older_than_s: float | None = None) -> Iterator[str]:
        """Uploads with work objects; with ``older_than_s``, those untouched that long."""
        cutoff = None if older_than_s is None else time.time() - older_than_s
        newest: dict[str, float] = {}
        for item in self._objects(self.work_prefix):
            upload_id = item["Key"][len(self.work_prefix) :].split("/", 1)[0]
            modified = item["LastModified"].timestamp()
            newest[upload_id] = max(modified, newest.get(upload_id, 0.0))
        for upload_id, modified in newest.items():
            if cutoff is None or modified <= cutoff:
                yield upload_id
