"""HTTP for the client: a requests session, a streamed chunk body, error classes and backoff."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, BinaryIO
from urllib.parse import quote

import requests
import urllib3
from requests.adapters import HTTPAdapter

from .errors import ClientError, ServerError, TransientError

# Bytes read from disk, hashed and handed to the socket at a time. The chunk
# itself is never in memory: only one block of it is, while it is being sent.
BLOCK_SIZE = 1 << 20
USER_AGENT = "chunky-redis-client/0.1"
# 409: another request holds the upload's lock (typically our own previous
# attempt, still being finished by the server); 5xx: the server or its store is
# briefly unavailable. Both are answered by waiting and asking for the offset.
TRANSIENT_STATUS = {409, 425, 429, 500, 502, 503, 504}


class _BlockAdapter(HTTPAdapter):
    """Makes urllib3 read request bodies in BLOCK_SIZE pieces instead of 16 KiB ones."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        version = urllib3.__version__  # type: ignore[attr-defined]  # set, but not in its __all__
        if int(version.split(".")[0]) >= 2:
            kwargs.setdefault("blocksize", BLOCK_SIZE)
        super().init_poolmanager(*args, **kwargs)


def make_session(headers: Mapping[str, str] | None = None) -> requests.Session:
    session = requests.Session()
    adapter = _BlockAdapter(max_retries=0)  # retries are ours: they resync the offset first
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.headers.update(headers or {})
    return session


def parse_header(line: str) -> tuple[str, str]:
    """``"Authorization: Bearer x"`` -> ``("Authorization", "Bearer x")``."""
    name, sep, value = line.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        raise ValueError(f"a header must look like 'Name: value', got {line!r}")
    return name, value.strip()


def content_disposition(filename: str) -> str:
    """The name as a quoted ``filename``, or RFC 8187 ``filename*`` when it is not plain ASCII.

    Only one of the two: parsers disagree on which wins when both are present.
    """
    if all(32 <= ord(c) < 127 for c in filename):
        escaped = filename.replace("\\", "\\\\").replace('"', '\\"')
        return f'attachment; filename="{escaped}"'
    return f"attachment; filename*=UTF-8''{quote(filename, safe='')}"


class RateLimit:
    """Keeps the average send rate under ``bytes_per_second`` (curl's --limit-rate)."""

    def __init__(self, bytes_per_second: int, clock: Callable[[], float] = time.monotonic):
        self.rate = bytes_per_second
        self.clock = clock
        self.start = clock()
        self.sent = 0

    def restart(self) -> None:
        self.start, self.sent = self.clock(), 0

    def consume(self, n: int) -> None:
        self.sent += n
        ahead = self.sent / self.rate - (self.clock() - self.start)
        if ahead > 0:
            time.sleep(ahead)


class ChunkBody:
    """Bytes ``[start, start + length)`` of an open file as a request body.

    urllib3 calls ``read(blocksize)`` until it gets ``b""``: each block is read
    from disk, fed to ``hasher`` and ``on_block``, sent, and dropped. ``__len__``
    gives requests the Content-Length, so the body is not sent chunked.
    """

    def __init__(
        self,
        file: BinaryIO,
        start: int,
        length: int,
        *,
        hasher: Any,
        on_block: Callable[[int], object] | None = None,
        rate_limit: RateLimit | None = None,
        block_size: int = BLOCK_SIZE,
    ):
        self.file = file
        self.position = start
        self.length = length
        self.remaining = length
        self.hasher = hasher
        self.on_block = on_block
        self.rate_limit = rate_limit
        self.block_size = block_size

    def __len__(self) -> int:
        return self.length

    def read(self, size: int | None = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        # A negative size asks for everything; a block is all we ever hold.
        size = self.block_size if size is None or size < 0 else size
        size = min(size, self.remaining)
        self.file.seek(self.position)
        data = self.file.read(size)
        if not data:
            raise ClientError(
                f"the file ended at byte {self.position}: it shrank during the upload"
            )
        self.position += len(data)
        self.remaining -= len(data)
        self.hasher.update(data)
        if self.rate_limit is not None:
            self.rate_limit.consume(len(data))
        if self.on_block is not None:
            self.on_block(len(data))
        return data

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(self.block_size):
            yield block


def send(
    session: requests.Session, method: str, url: str, *, timeout: tuple[float, float], **kwargs: Any
) -> dict[str, Any]:
    """One request; returns the JSON body of a 2xx answer.

    Raises TransientError for what a retry may cure, ServerError for a refusal.
    """
    try:
        response = session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
    ) as e:
        raise TransientError(f"{method} {url}: {_short(e)}", cause=e) from e
    except requests.RequestException as e:
        raise ClientError(f"{method} {url}: {e}") from e
    body = _json_body(response)
    if response.status_code in TRANSIENT_STATUS:
        detail = body.get("detail") or response.reason
        raise TransientError(
            f"{method} {url}: HTTP {response.status_code} {detail}",
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )
    if not 200 <= response.status_code < 300:
        if not body:
            body = {"detail": f"{response.status_code} {response.reason}"}
        raise ServerError(response.status_code, body, url)
    return body


def _json_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(error: BaseException) -> str:
    # requests nests urllib3's reason several levels deep; the innermost is the useful part.
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    reason = getattr(error, "reason", None)
    return str(reason or error)


class Backoff:
    """Exponential backoff with full jitter; ``retries`` consecutive failures are tolerated.

    A success resets it, so a long upload survives any number of separate outages.
    """

    def __init__(
        self,
        retries: int = 8,
        base: float = 0.5,
        cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.retries = retries
        self.base = base
        self.cap = cap
        self.sleep = sleep
        self.failures = 0
        self.total = 0

    def reset(self) -> None:
        self.failures = 0

    def wait(self, error: TransientError) -> float:
        """Sleep before the next attempt, or re-raise ``error`` when the retries are used up."""
        self.failures += 1
        self.total += 1
        if self.failures > self.retries:
            raise error
        # Annotated: int ** int is typed Any (a negative exponent makes a float).
        backoff: float = self.base * 2 ** (self.failures - 1)
        delay = random.uniform(0.5, 1.0) * min(self.cap, backoff)
        if error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.cap))
        self.sleep(delay)
        return delay
