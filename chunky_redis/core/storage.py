"""The chunk storage interface: where an upload's bytes wait until it is complete. No Django here.

The core and the post-processing use only these methods, never a path, so that
a storage other than a shared directory (filesystem.py) can take its place.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import BinaryIO, Protocol

from .errors import ChunkyError


class ChunkWriterProtocol(Protocol):
    """One chunk being written at consecutive offsets from its start."""

    @property
    def written(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    def close(self, *, sync: bool = True) -> None: ...


class FinalTarget(ABC):
    """Where a complete upload goes (the processing layer adapts Django's storages)."""

    @abstractmethod
    def adopt(self, path: str, name: str) -> str | None:
        """Take the local file at ``path`` by renaming it to ``name``; None if this target cannot."""

    @abstractmethod
    def save(self, name: str, stream: BinaryIO) -> str:
        """Store ``stream`` under ``name`` so that it appears only whole; returns the stored name."""

    def adopt_object(self, bucket: str, key: str) -> str | None:
        """Take the complete S3 object ``bucket``/``key`` as it is, the name it has in this
        target; None if this target cannot (not S3, another bucket, or outside its location)."""
        return None


class ChunkStorage(ABC):
    # Whether ``concatenate()`` works here (the tus concatenation extension is offered only then).
    can_concatenate = False

    @abstractmethod
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
    ) -> ChunkWriterProtocol:
        """Open the upload's bytes for one chunk written from ``start``.

        Only ``create`` (a new upload) makes them, never over existing ones;
        appending to missing bytes raises ChunkFileMissing. ``limit`` caps the
        chunk (one byte more raises ``overflow()``), ``on_block`` sees every
        block in order, ``heartbeat`` runs before each write.
        """

    def exists(self, upload_id: str) -> bool:
        return self.size(upload_id) is not None

    @abstractmethod
    def size(self, upload_id: str) -> int | None:
        """How many bytes are stored for the upload; None when there are none at all."""

    @abstractmethod
    def digest(self, upload_id: str, algorithm: str, length: int) -> str:
        """The hex digest of the first ``length`` stored bytes, read as a stream."""

    def concatenate(
        self, upload_id: str, part_ids: list[str], on_block: Callable[[bytes], None]
    ) -> int:
        """Write the parts' bytes, in order, as ``upload_id``'s (replacing any), feeding each
        block to ``on_block``; returns the bytes written. ChunkFileMissing when a part is gone."""
        raise NotImplementedError(f"{type(self).__name__} cannot concatenate uploads")

    def sync(self, upload_id: str) -> None:
        """Make the upload's stored bytes durable (deferred durability: durability.py).
        A storage whose writes are durable once acknowledged does nothing."""
        return None

    def feed(
        self, upload_id: str, start: int, length: int, on_block: Callable[[bytes], None]
    ) -> int:
        """Feed the stored bytes from ``start`` (``length`` at most) to ``on_block``, in order;
        returns how many there were. Recovery after a host crash re-checks bytes with it."""
        raise NotImplementedError(f"{type(self).__name__} cannot read bytes back")

    @abstractmethod
    def truncate(self, upload_id: str, size: int) -> None:
        """Drop what lies past ``size`` (bytes a dead request wrote past the offset).

        Finalization calls it with the upload's size before ``move_into()``, which may
        take it as the length to hand off (the S3 storage does)."""

    @abstractmethod
    def move_into(self, upload_id: str, target: FinalTarget, name: str) -> str:
        """Hand the bytes to the final storage under ``name``; they leave this storage."""

    @abstractmethod
    def delete(self, upload_id: str) -> bool:
        """Remove the upload's bytes; False when there were none."""

    @abstractmethod
    def iter_ids(self, older_than_s: float | None = None) -> Iterator[str]:
        """Upload ids with stored bytes; with ``older_than_s``, only those untouched that long."""
