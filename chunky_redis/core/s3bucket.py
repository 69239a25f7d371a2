"""Objects in one S3 bucket, as the S3 chunk storage reads and writes them. No Django here.

boto3's errors become the core's StorageError (a 503 for the client: retry later),
except "not found", which a read answers with None.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

from .errors import StorageError

_DELETE_BATCH = 1000  # DeleteObjects' limit


def s3_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def raise_storage_error(error: Exception, doing: str) -> NoReturn:
    raise StorageError(
        f"S3 refused to {doing}: {error_code(error) or type(error).__name__}."
    ) from error


class BucketObjects:
    """Reads, writes, lists and deletes objects of ``bucket`` through a boto3 S3 ``client``."""

    def __init__(self, client: Any, bucket: str):
        if not bucket:
            raise StorageError("No bucket is configured for the S3 chunk storage.")
        self.client = client
        self.bucket = bucket

    def _call(self, doing: str, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except s3_errors() as e:
            raise_storage_error(e, doing)

    def _get(self, key: str) -> tuple[bytes, dict[str, str]] | None:
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=key)
            return reply["Body"].read(), reply.get("Metadata", {})
        except s3_errors() as e:
            if error_code(e) in ("NoSuchKey", "404"):
                return None
            raise_storage_error(e, "read the upload's state")

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.head_object(Bucket=self.bucket, Key=key))
        except s3_errors() as e:
            if error_code(e) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise_storage_error(e, "look up an object")

    def _keys(self, prefix: str) -> Iterator[str]:
        for item in self._objects(prefix):
            yield item["Key"]

    def _objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            reply = self._call("list objects", "list_objects_v2", Prefix=prefix, **extra)
            yield from reply.get("Contents", [])
            if not reply.get("IsTruncated"):
                return
            token = reply["NextContinuationToken"]

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": k} for k in keys[i : i + _DELETE_BATCH]]
            self._call("delete objects", "delete_objects", Delete={"Objects": batch, "Quiet": True})


class Readable:
    """botocore's streaming body as the binary file a storage's save() reads."""

    def __init__(self, body: Any):
        self.body = body

    def read(self, size: int | None = -1) -> bytes:
        return bytes(self.body.read(None if size is None or size < 0 else size))
