"""An upload's record as it lives in Redis, and the store's error wrapping. No Django here."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib
from redis.exceptions import ClusterError, RedisClusterException

from .checksums import ResumableHash
from .errors import StoreUnavailable

UPLOADING = "uploading"
PROCESSING = "processing"
COMPLETE = "complete"
FAILED = "failed"
EXPIRED = "expired"
# The size of an upload whose length is not declared yet (it is set once, never changed).
UNKNOWN_LENGTH = -1
DIGEST_FIELD_PREFIX = "hash_state:"
# The key of ``extra`` that lists, in order, the uploads a concatenated upload is made of.
CONCAT_PARTS = "concat_parts"


@dataclass
class Upload:
    upload_id: str
    owner: str = ""
    filename: str = ""
    size: int = 0
    offset: int = 0
    status: str = UPLOADING
    created: int = 0  # ms since the epoch
    expires: int = 0  # ms since the epoch
    algorithm: str = "md5"
    hash_state: bytes = b""
    checksum: str = ""  # the digest the client gave at completion
    reason: str = ""
    final_name: str = ""
    final_url: str = ""
    completed: int = 0
    queued: int = 0  # ms since the epoch: when post-processing was last queued
    # Set with the status change processing -> complete/failed: the run (Celery task id)
    # that made it, and whether its signals are still "pending" or were "sent".
    signal_run: str = ""
    signal_state: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Whole-file digests kept beside ``algorithm``'s (a dialect asked for them at creation):
    # algorithm -> resumable state, each stored as the record's field "hash_state:<algorithm>".
    digest_states: dict[str, bytes] = field(default_factory=dict)
    # Deferred durability (CHUNKY_REDIS_SYNC_EVERY > 0, see durability.py): the offset up to
    # which the chunk storage has synced the bytes, the checksum state there, and the boot id
    # of the host that wrote the bytes past it ("" when everything recorded is synced).
    durable: int = 0
    durable_state: bytes = b""
    boot: str = ""
    # The background sync that may move ``durable`` next ("" for none): see SYNCED in lua.py.
    sync_ticket: str = ""

    _INT_FIELDS = ("size", "offset", "created", "expires", "completed", "queued", "durable")
    _BYTES_FIELDS = ("hash_state", "durable_state")

    @property
    def length_known(self) -> bool:
        return self.size != UNKNOWN_LENGTH

    def hexdigest(self, algorithm: str) -> str | None:
        """The digest of the bytes received so far, from the streaming state (no file read).

        ``algorithm`` is the upload's own or one of the extra digests asked for at
        creation; None when no state is kept for it (libcrypto missing, or not asked).
        """
        state = (
            self.hash_state if algorithm == self.algorithm else self.digest_states.get(algorithm)
        )
        if not state:
            return None
        return ResumableHash(algorithm, state).hexdigest()

    @property
    def digests(self) -> tuple[str, ...]:
        """Every whole-file digest asked for: the upload's own first, then the extra ones, sorted."""
        extra = tuple(sorted(a for a in self.digest_states if a != self.algorithm))
        return (self.algorithm, *extra)

    @classmethod
    def from_redis(cls, upload_id: str, raw: dict[bytes, bytes] | list[bytes]) -> Upload:
        if isinstance(raw, list):
            # (a flat HGETALL reply always holds pairs: strict never trips)
            raw = dict(zip(raw[::2], raw[1::2], strict=True))  # pragma: no mutate
        values: dict[str, Any] = {}
        for key, value in raw.items():
            known = _FIELD_READERS.get(key)
            if known is not None:
                name, read = known
                values[name] = read(value)
                continue
            name = key.decode()
            if name.startswith(DIGEST_FIELD_PREFIX):
                states = values.setdefault("digest_states", {})
                states[name[len(DIGEST_FIELD_PREFIX) :]] = value
        return cls(upload_id=upload_id, **values)

    def to_redis(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "upload_id":
                continue
            if name == "digest_states":
                out.update(digest_fields(self.digest_states))
                continue
            value = getattr(self, name)
            out[name] = json.dumps(value) if name == "extra" else value
        return out


def _field_reader(name: str) -> Callable[[bytes], Any]:
    if name in Upload._BYTES_FIELDS:
        return bytes
    if name in Upload._INT_FIELDS:
        return lambda value: int(value or 0)
    if name == "extra":
        return lambda value: json.loads(value) if value else {}
    return bytes.decode


# A stored field's name -> (the Upload attribute, how its value is read), for from_redis:
# the record is read on every chunk. Fields not named here are ignored, except the extra
# digests' states ("hash_state:<algorithm>").
_FIELD_READERS: dict[bytes, tuple[str, Callable[[bytes], Any]]] = {
    name.encode(): (name, _field_reader(name))
    for name in Upload.__dataclass_fields__
    if name not in ("upload_id", "digest_states")
}


def digest_fields(states: dict[str, bytes]) -> dict[str, bytes]:
    """The record's fields that hold the extra digests' states."""
    return {DIGEST_FIELD_PREFIX + algorithm: state for algorithm, state in states.items()}


@contextmanager
def wrap_errors() -> Iterator[None]:
    try:
        yield
    except (redis_lib.ConnectionError, redis_lib.TimeoutError) as e:
        raise StoreUnavailable(f"Redis is unavailable: {e}") from e
    except redis_lib.ResponseError as e:
        raise StoreUnavailable(f"Redis refused a command: {e}") from e
    except (ClusterError, RedisClusterException) as e:
        # no node answers for a slot, or a slot mid-migration kept saying TRYAGAIN
        raise StoreUnavailable(f"Redis Cluster is unavailable: {e}") from e


def now_ms(clock: Callable[[], float] = time.time) -> int:
    return int(clock() * 1000)
