"""A resumable upload client for the chunky_redis protocol. It needs no Django.

    from chunky_redis.client import upload, status

    result = upload("big.iso", "https://files.example.com/upload/", chunk_size="8M",
                    headers={"Authorization": "Token ..."})
    print(result["final_name"])

The file is streamed: each chunk is read from disk block by block while it is
sent and hashed, so memory stays at a few MiB whatever the file or chunk size.
An interrupted upload resumes from the server's offset on the next call (the
upload id is kept in ``FILE.chunky.json``). Install with ``chunky_redis[client]``.
"""

from .api import status, upload
from .errors import ClientError, ServerError, TransientError, UploadFailed
from .sizes import parse_size
from .transfer import DEFAULT_CHUNK_SIZE, Uploader

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ClientError",
    "ServerError",
    "TransientError",
    "UploadFailed",
    "Uploader",
    "parse_size",
    "status",
    "upload",
]
