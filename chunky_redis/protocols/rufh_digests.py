"""Digest fields (RFC 9530) in the IETF dialect: Content-Digest, Repr-Digest, Want-Repr-Digest.

``Content-Digest`` covers one request's body: the core checks it while the body streams
and records nothing on a mismatch. ``Repr-Digest`` covers the whole upload: sent at creation
(kept with the upload) or on the completing request, it is checked at completion against
the digest the core kept while streaming, without reading the file again.
"""

from __future__ import annotations

import base64
import binascii
import re

from django.http import HttpRequest

from ..core import errors as exc
from ..core.checksums import ChunkDigest
from ..core.store import Upload
from ..core.uploads import UploadService

# RFC 9530's algorithm keys and the core's names, the strongest first.
ALGORITHMS = {"sha-512": "sha512", "sha-256": "sha256", "sha": "sha1", "md5": "md5"}
KEYS = {name: key for key, name in ALGORITHMS.items()}
_MEMBER = re.compile(r"^([a-z*][a-z0-9_.*-]*)\s*=\s*(.*)$")


class BadDigestField(exc.ChunkyError):
    default_detail = "A digest field is not a dictionary of byte sequences (RFC 9530)."
    default_code = "bad_digest_field"


class ReprDigestMismatch(exc.ChecksumMismatch):
    """The whole upload's digest is not the one the client sent: the upload fails."""

    default_code = "repr_digest_mismatch"
    completes = True  # the answer belongs to the upload's processing (Upload-Complete: ?1)


def _members(value: str, field: str) -> dict[str, str]:
    members = {}
    for part in value.split(","):
        match = _MEMBER.match(part.strip())
        if not match:
            raise BadDigestField(f"{field}: {part.strip()!r} is not a dictionary member.")
        members[match.group(1)] = match.group(2).split(";", 1)[0].strip()
    return members


def digests_in(request: HttpRequest, field: str) -> dict[str, bytes]:
    """The field's digests of algorithms the core computes, by core name; others are ignored."""
    value = request.headers.get(field)
    if value is None:
        return {}
    found = {}
    for key, item in _members(value, field).items():
        if key not in ALGORITHMS:
            continue  # RFC 9530: an algorithm the recipient does not support may be ignored
        if len(item) < 2 or item[0] != ":" or item[-1] != ":":
            raise BadDigestField(f"{field}: the {key} digest is not a byte sequence (:base64:).")
        try:
            found[ALGORITHMS[key]] = base64.b64decode(item[1:-1], validate=True)
        except binascii.Error:
            raise BadDigestField(f"{field}: the {key} digest is not base64.") from None
    return found


def chunk_digest(request: HttpRequest) -> ChunkDigest | None:
    """The strongest Content-Digest the core can check for this request's body."""
    found = digests_in(request, "Content-Digest")
    for algorithm in ALGORITHMS.values():
        if algorithm in found:
            return ChunkDigest(algorithm, found[algorithm])
    return None


def wanted(request: HttpRequest, always: tuple[str, ...]) -> tuple[str, ...]:
    """Whole-file digests to keep while streaming: ``always``, those of a Repr-Digest sent at
    creation, and those Want-Repr-Digest prefers (a preference of 0 means not wanted)."""
    names = set(always) | set(digests_in(request, "Repr-Digest"))
    value = request.headers.get("Want-Repr-Digest")
    for key, preference in (_members(value, "Want-Repr-Digest") if value else {}).items():
        if key in ALGORITHMS and preference.isdigit() and int(preference) > 0:
            names.add(ALGORITHMS[key])
    return tuple(sorted(names))


def to_extra(found: dict[str, bytes]) -> dict[str, dict[str, str]]:
    """A Repr-Digest sent at creation, kept in the upload's extra attributes until completion."""
    return {"repr_digest": {name: digest.hex() for name, digest in found.items()}} if found else {}


def check_repr(service: UploadService, upload: Upload, request: HttpRequest) -> None:
    """Compare the client's Repr-Digest (this request's, else the creation's) with ours."""
    expected = {name: digest.hex() for name, digest in digests_in(request, "Repr-Digest").items()}
    expected = expected or dict(upload.extra.get("repr_digest") or {})
    for name, hexdigest in expected.items():
        ours = upload.hexdigest(name)
        if ours is None:  # no state kept (not asked for at creation, or no libcrypto)
            ours = service.storage.digest(upload.upload_id, name, upload.offset)
        if ours != hexdigest:
            raise ReprDigestMismatch(
                name,
                f"The upload's {KEYS[name]} is {ours}, not {hexdigest} as Repr-Digest says; "
                "the upload failed and was removed.",
            )


def repr_header(upload: Upload) -> str:
    """Repr-Digest of the whole upload: the SHA-2 digests kept while streaming (RFC 9530
    lists md5 and sha as deprecated)."""
    members = []
    for name in upload.digests:
        digest = upload.hexdigest(name)
        if digest is not None and name in ("sha256", "sha512"):
            encoded = base64.b64encode(bytes.fromhex(digest)).decode()
            members.append(f"{KEYS[name]}=:{encoded}:")
    return ", ".join(members)
