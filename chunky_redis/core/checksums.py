"""Checksums whose in-progress state can be stored between chunks.

hashlib objects cannot be pickled, so a chunk handled by one worker could not
continue the digest another worker started. OpenSSL's low-level contexts
(MD5_CTX, SHA_CTX, SHA256_CTX, SHA512_CTX) are plain C structs: we drive them
through ctypes and store their bytes in the upload's Redis record. The calls
release the GIL and hash at hashlib's speed.

Where libcrypto or these symbols are missing, ``incremental_available()`` is
False, a system check warns (chunky_redis.W001), and the digest is computed by
reading the stored file at completion instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

from .errors import UnsupportedDigest

ALGORITHMS = ("md5", "sha1", "sha256", "sha512")


@dataclass(frozen=True)
class _Spec:
    prefix: str  # OpenSSL symbol prefix: MD5 -> MD5_Init / MD5_Update / MD5_Final
    ctx_size: int  # sizeof(the *_CTX struct) on every platform OpenSSL supports
    digest_size: int


_SPECS = {
    "md5": _Spec("MD5", 92, 16),
    "sha1": _Spec("SHA1", 96, 20),
    "sha256": _Spec("SHA256", 112, 32),
    "sha512": _Spec("SHA512", 216, 64),
}


class _Functions:
    def __init__(self, lib: ctypes.CDLL, spec: _Spec):
        self.spec = spec
        self.init = getattr(lib, f"{spec.prefix}_Init")
        self.update = getattr(lib, f"{spec.prefix}_Update")
        self.final = getattr(lib, f"{spec.prefix}_Final")
        self.init.argtypes = [ctypes.c_void_p]
        self.update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        self.final.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        for fn in (self.init, self.update, self.final):
            fn.restype = ctypes.c_int


@lru_cache(maxsize=1)
def _libcrypto() -> ctypes.CDLL | None:
    names = [ctypes.util.find_library("crypto"), "libcrypto.so.3", "libcrypto.so"]
    for name in names:
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@cache
def _functions(algorithm: str) -> _Functions | None:
    lib = _libcrypto()
    if lib is None:
        return None
    try:
        funcs = _Functions(lib, _SPECS[algorithm])
    except AttributeError:
        return None
    return funcs if _self_test(funcs, algorithm) else None


def _self_test(funcs: _Functions, algorithm: str) -> bool:
    """Hash across a serialize/restore boundary and compare with hashlib.

    This catches a struct size that does not match the library at hand.
    """
    first, second = b"chunky" * 37, b"redis" * 101
    h = ResumableHash(algorithm, funcs=funcs)
    h.update(first)
    h2 = ResumableHash(algorithm, state=h.serialize(), funcs=funcs)
    h2.update(second)
    return h2.hexdigest() == hashlib.new(algorithm, first + second).hexdigest()


def incremental_available(algorithm: str = "md5") -> bool:
    return algorithm in _SPECS and _functions(algorithm) is not None


class ResumableHash:
    """A digest in progress whose state is ``bytes`` that can be stored and restored."""

    def __init__(
        self, algorithm: str, state: bytes | None = None, *, funcs: _Functions | None = None
    ):
        funcs = funcs or _functions(algorithm)
        if funcs is None:
            raise RuntimeError(f"Incremental {algorithm} is not available (libcrypto missing).")
        self.algorithm = algorithm
        self._f = funcs
        size = funcs.spec.ctx_size
        if state is None:
            self._ctx = ctypes.create_string_buffer(size)
            funcs.init(self._ctx)
        else:
            if len(state) != size:
                raise ValueError(f"A stored {algorithm} state has {size} bytes, not {len(state)}.")
            self._ctx = ctypes.create_string_buffer(state, size)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if isinstance(data, bytes):
            self._f.update(self._ctx, data, len(data))
        else:
            view = memoryview(data).cast("B")
            buf = (
                (ctypes.c_char * view.nbytes).from_buffer(view)
                if not view.readonly
                else bytes(view)
            )
            self._f.update(self._ctx, buf, view.nbytes)

    def serialize(self) -> bytes:
        return self._ctx.raw

    def hexdigest(self) -> str:
        """The digest of what was fed so far; the state itself is left as it is."""
        ctx = ctypes.create_string_buffer(self._ctx.raw, len(self._ctx))
        out = ctypes.create_string_buffer(self._f.spec.digest_size)
        self._f.final(out, ctx)
        return out.raw.hex()


@dataclass(frozen=True)
class ChunkDigest:
    """The digest a request announces for its own body (one chunk): checked while it streams."""

    algorithm: str  # one of ALGORITHMS
    expected: bytes  # the raw digest, not hex


def check_algorithms(chunk_digest: ChunkDigest | None, digests: Sequence[str]) -> None:
    """Refuse (UnsupportedDigest) an algorithm the core does not compute."""
    for algorithm in [*digests, *([chunk_digest.algorithm] if chunk_digest else [])]:
        if algorithm not in ALGORITHMS:
            raise UnsupportedDigest(algorithm, ALGORITHMS)


def file_hexdigest(path: str, algorithm: str, size: int | None = None, block: int = 1 << 20) -> str:
    """Digest of the first ``size`` bytes of a file (all of it when None), read in blocks."""
    h = hashlib.new(algorithm)
    remaining = size
    with open(path, "rb", buffering=0) as f:
        while remaining is None or remaining > 0:
            want = block if remaining is None else min(block, remaining)
            data = f.read(want)
            if not data:
                break
            h.update(data)
            if remaining is not None:
                remaining -= len(data)
    return h.hexdigest()
