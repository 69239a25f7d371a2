"""One test per server-side MUST of tus 1.0 (protocol.md of tus/tus-resumable-upload-protocol),
each naming its section, through Django's test client on fakeredis and the real Redis.

The extensions tested are those advertised: creation, creation-with-upload,
creation-defer-length, expiration, checksum, termination, concatenation.
"""

from __future__ import annotations

import email.utils
import re

import pytest

from tests.support.api import ClientApi
from tests.support.tus import V, checksum, create, head, metadata, patch, path_of

pytestmark = pytest.mark.django_db

EXTENSIONS = [
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "expiration",
    "checksum",
    "termination",
    "concatenation",
    "concatenation-unfinished",
]


@pytest.fixture
def api(chunky):
    return ClientApi()


def options(api, headers=None):
    return api.request("OPTIONS", "/files/", b"", "", headers or {})


def records(store) -> list:
    return list(store.redis.scan_iter(match=f"{store.prefix}:*:upload"))


# -- Core Protocol > Headers ------------------------------------------------------------------


def test_core_headers_upload_offset_must_be_a_non_negative_integer(api):
    """Core Protocol > Headers > Upload-Offset: the value MUST be a non-negative integer."""
    path = path_of(create(api, 5))
    for bad in ("-1", "1.0", "x", ""):
        reply = patch(api, path, 0, b"abc", headers={"Upload-Offset": bad})
        assert reply.status == 400, bad
    assert head(api, path).headers["upload-offset"] == "0"


def test_core_headers_upload_length_must_be_a_non_negative_integer(api, store):
    """Core Protocol > Headers > Upload-Length: the value MUST be a non-negative integer."""
    for bad in ("-1", "2.5", "ten"):
        assert create(api, 0, headers={"Upload-Length": bad}).status == 400
    assert records(store) == []


def test_core_headers_tus_version_lists_the_versions_by_preference(api):
    """Core Protocol > Headers > Tus-Version: a comma-separated list, most preferred first."""
    assert options(api).headers["tus-version"] == "1.0.0"


def test_core_headers_tus_resumable_on_every_response_but_options(api):
    """Core Protocol > Headers > Tus-Resumable: in every request and response except OPTIONS."""
    created = create(api, 3)
    path = path_of(created)
    replies = [
        created,
        head(api, path),
        patch(api, path, 0, b"a"),
        patch(api, path, 0, b"a"),  # an error (409) too
        api.request("DELETE", path, headers=V),
        head(api, path),  # 404
        api.request("GET", "/files/", headers=V),  # 405
        api.request("GET", "/files/a/b", headers=V),  # 404 below the mount point
    ]
    for reply in replies:
        assert reply.headers.get("tus-resumable") == "1.0.0", reply.status
    assert "tus-resumable" not in options(api).headers


def test_core_headers_unsupported_version_is_412_with_tus_version_and_not_processed(api, store):
    """Core Protocol > Headers > Tus-Resumable: an unsupported version MUST get 412 with
    Tus-Version, and the request MUST NOT be processed."""
    path = path_of(create(api, 3))
    for version in ("0.2.2", "2.0.0", None):
        sent = {"Tus-Resumable": version} if version else {"Tus-Resumable": ""}
        reply = api.request(
            "PATCH", path, b"abc", "application/offset+octet-stream", {**sent, "Upload-Offset": "0"}
        )
        assert reply.status == 412 and reply.headers["tus-version"] == "1.0.0"
        assert reply.data["code"] == "unsupported_version"
        created = api.request("POST", "/files/", b"", "", {**sent, "Upload-Length": "3"})
        assert created.status == 412
    assert head(api, path).headers["upload-offset"] == "0"
    assert len(records(store)) == 1


def test_core_headers_tus_extension_lists_the_supported_extensions(api):
    """Core Protocol > Headers > Tus-Extension: a comma-separated list of the extensions."""
    assert options(api).headers["tus-extension"].split(",") == EXTENSIONS


def test_core_headers_tus_max_size_is_a_non_negative_integer(api, chunky):
    """Core Protocol > Headers > Tus-Max-Size: a non-negative integer, the largest upload."""
    assert "tus-max-size" not in options(api).headers  # no limit configured
    chunky.CHUNKY_REDIS_MAX_BYTES = 1000
    assert options(api).headers["tus-max-size"] == "1000"


def test_core_headers_method_override_is_the_method(api):
    """Core Protocol > Headers > X-HTTP-Method-Override: MUST be taken as the method, the
    actual method MUST be ignored."""
    path = path_of(create(api, 4))
    sent = {**V, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}
    reply = api.request("POST", path, b"ab", "application/offset+octet-stream", sent)
    assert reply.status == 204 and reply.headers["upload-offset"] == "2"
    status = api.request("POST", path, b"", "", {**V, "X-HTTP-Method-Override": "HEAD"})
    assert status.status == 200 and status.headers["upload-offset"] == "2"
    gone = api.request("POST", path, b"", "", {**V, "X-HTTP-Method-Override": "DELETE"})
    assert gone.status == 204
    assert head(api, path).status == 404


# -- Core Protocol > Requests -----------------------------------------------------------------


def test_core_head_always_has_upload_offset_and_the_known_length(api):
    """Core Protocol > Requests > HEAD: Upload-Offset MUST be there even at 0 or when complete;
    Upload-Length MUST be there when known."""
    path = path_of(create(api, 2))
    fresh = head(api, path)
    assert fresh.status == 200
    assert (fresh.headers["upload-offset"], fresh.headers["upload-length"]) == ("0", "2")
    patch(api, path, 0, b"ok")
    done = head(api, path)
    assert (done.headers["upload-offset"], done.headers["upload-length"]) == ("2", "2")
    missing = head(api, "/files/" + "e" * 32)
    assert missing.status == 404 and "upload-offset" not in missing.headers


def test_core_head_is_never_cached(api):
    """Core Protocol > Requests > HEAD: MUST send Cache-Control: no-store."""
    path = path_of(create(api, 2))
    assert head(api, path).headers["cache-control"] == "no-store"


def test_core_patch_needs_the_offset_content_type(api):
    """Core Protocol > Requests > PATCH: all PATCH requests MUST use
    application/offset+octet-stream (415 otherwise)."""
    path = path_of(create(api, 3))
    for content_type in (
        "application/octet-stream",
        "text/plain",
        "multipart/form-data; boundary=x",
    ):
        assert patch(api, path, 0, b"abc", content_type=content_type).status == 415
    assert head(api, path).headers["upload-offset"] == "0"


def test_core_patch_offset_mismatch_is_409_and_changes_nothing(api):
    """Core Protocol > Requests > PATCH: offsets that do not match MUST get 409, upload unchanged."""
    path = path_of(create(api, 6))
    patch(api, path, 0, b"abc")
    for offset in (0, 2, 4, 6):
        reply = patch(api, path, offset, b"zzz")
        assert reply.status == 409 and reply.headers["upload-offset"] == "3"
    assert head(api, path).headers["upload-offset"] == "3"
    assert patch(api, path, 3, b"def").status == 204


def test_core_patch_success_is_204_with_the_new_offset(api):
    """Core Protocol > Requests > PATCH: MUST answer 204 with Upload-Offset = the offset before
    plus the bytes received."""
    path = path_of(create(api, 10))
    offset = 0
    for body in (b"a", b"bcd", b"", b"efghij"):
        reply = patch(api, path, offset, body)
        offset += len(body)
        assert reply.status == 204 and reply.headers["upload-offset"] == str(offset)


def test_core_options_has_tus_version_and_ignores_tus_resumable(api):
    """Core Protocol > Requests > OPTIONS: MUST contain Tus-Version; the Server MUST ignore a
    Tus-Resumable header on it."""
    for headers in ({}, {"Tus-Resumable": "0.0.1"}):
        reply = options(api, headers)
        assert reply.status in (200, 204) and reply.headers["tus-version"] == "1.0.0"


# -- Creation ---------------------------------------------------------------------------------


def test_creation_defer_length_value_must_be_1(api, store):
    """Creation > Headers > Upload-Defer-Length: its value MUST be 1 (400 otherwise)."""
    for bad in ("0", "2", "true"):
        assert create(api, None, headers={"Upload-Defer-Length": bad}).status == 400
    assert records(store) == []
    assert create(api, None).status == 201


def test_creation_metadata_must_be_well_formed(api, store):
    """Creation > Headers > Upload-Metadata: keys non-empty, without spaces or commas, unique;
    values Base64."""
    for bad in (",x", "a b c", "a,a", "k not*base64", "k\tdGVzdA=="):
        assert create(api, 1, headers={"Upload-Metadata": bad}).status == 400, bad
    assert records(store) == []


def test_creation_post_is_201_with_location(api):
    """Creation > Requests > POST: MUST answer 201 with Location, the upload's URL."""
    reply = create(api, 7)
    assert reply.status == 201 and reply.headers["content-length"] == "0"
    assert re.fullmatch(r"http://testserver/files/[0-9a-f]{32}", reply.headers["location"])
    assert head(api, path_of(reply)).status == 200


def test_creation_deferred_length_is_said_on_head_and_never_changes(api):
    """Creation > Requests > POST: while the length is unknown HEAD MUST say
    Upload-Defer-Length: 1; once set the length MUST NOT change."""
    path = path_of(create(api, None))
    assert head(api, path).headers["upload-defer-length"] == "1"
    assert patch(api, path, 0, b"ab", headers={"Upload-Length": "5"}).status == 204
    assert "upload-defer-length" not in head(api, path).headers
    changed = patch(api, path, 2, b"c", headers={"Upload-Length": "6"})
    assert changed.status == 400 and changed.data["code"] == "total_changed"
    assert head(api, path).headers["upload-length"] == "5"


def test_creation_metadata_is_given_back_on_head(api):
    """Creation > Requests > POST: with metadata, HEAD MUST include Upload-Metadata as sent."""
    sent = metadata(filename="a.txt", filetype="text/plain") + ",flag"
    path = path_of(create(api, 1, headers={"Upload-Metadata": sent}))
    assert head(api, path).headers["upload-metadata"] == sent


def test_creation_over_the_maximum_is_413(api, chunky, store):
    """Creation > Requests > POST: a length over the maximum (Tus-Max-Size) MUST get 413."""
    chunky.CHUNKY_REDIS_MAX_BYTES = 100
    assert create(api, 101).status == 413
    assert records(store) == []
    assert create(api, 100).status == 201


def test_creation_of_an_empty_file_is_complete_at_once(api, signal_log):
    """Creation > Requests > POST: Upload-Length: 0 is immediately complete."""
    path = path_of(create(api, 0))
    reply = head(api, path)
    assert (reply.headers["upload-offset"], reply.headers["upload-length"]) == ("0", "0")
    assert [kw["size"] for name, kw in signal_log if name == "upload_completed"] == [0]


def test_creation_with_upload_answers_the_offset_after_the_body(api):
    """Creation With Upload: MUST include Upload-Offset, the offset after the accepted bytes;
    MUST be offered only with Creation."""
    reply = create(api, 10, b"hello")
    assert reply.status == 201 and reply.headers["upload-offset"] == "5"
    assert head(api, path_of(reply)).headers["upload-offset"] == "5"
    extensions = options(api).headers["tus-extension"].split(",")
    assert "creation" in extensions and "creation-with-upload" in extensions


# -- Expiration -------------------------------------------------------------------------------


def test_expiration_upload_expires_on_post_and_every_patch(api):
    """Expiration > Headers > Upload-Expires: MUST be in every PATCH response while the upload
    will expire, and in the POST response; in RFC 9110 date format."""
    created = create(api, 4)
    path = path_of(created)
    stamps = [
        created.headers["upload-expires"],
        patch(api, path, 0, b"ab").headers["upload-expires"],
    ]
    for stamp in stamps:
        assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", stamp)
        assert email.utils.parsedate_to_datetime(stamp).tzname() == "UTC"
    assert "upload-expires" not in patch(api, path, 2, b"cd").headers  # complete: won't expire


def test_expiration_an_expired_upload_is_gone(api, store):
    """Expiration > Headers > Upload-Expires: resuming a removed upload gets 404 or 410."""
    path = path_of(create(api, 4))
    upload_id = path.rsplit("/", 1)[1]
    store.redis.hset(store.record_key(upload_id), "expires", store.now() - 1)
    assert head(api, path).status == 410
    reply = patch(api, path, 0, b"ab")
    assert reply.status == 410 and reply.data["code"] == "expired"


# -- Checksum ---------------------------------------------------------------------------------


def test_checksum_mismatch_is_460_and_the_chunk_is_discarded(api):
    """Checksum: the Server MUST verify the chunk; on a mismatch (460) it MUST be discarded and
    the offset not updated."""
    path = path_of(create(api, 6))
    reply = patch(api, path, 0, b"abc", headers={"Upload-Checksum": checksum("sha1", b"abd")})
    assert reply.status == 460
    assert head(api, path).headers["upload-offset"] == "0"
    assert (
        patch(api, path, 0, b"abc", headers={"Upload-Checksum": checksum("sha1", b"abc")}).status
        == 204
    )


def test_checksum_unsupported_algorithm_is_400_and_discarded(api):
    """Checksum: an algorithm the Server does not support gets 400; chunk discarded."""
    path = path_of(create(api, 6))
    for name in ("crc32", "sha3-256", "md4"):
        reply = patch(api, path, 0, b"abc", headers={"Upload-Checksum": f"{name} AAAA"})
        assert reply.status == 400 and reply.data["code"] == "unsupported_digest"
    assert head(api, path).headers["upload-offset"] == "0"


def test_checksum_sha1_is_supported(api):
    """Checksum: the Server MUST support sha1."""
    path = path_of(create(api, 3))
    assert (
        patch(api, path, 0, b"abc", headers={"Upload-Checksum": checksum("sha1", b"abc")}).status
        == 204
    )


def test_checksum_algorithms_are_listed_on_options_in_lowercase_ascii(api):
    """Checksum: Tus-Checksum-Algorithm MUST be in the OPTIONS response; names lowercase ASCII."""
    names = options(api).headers["tus-checksum-algorithm"].split(",")
    assert "sha1" in names
    assert all(re.fullmatch(r"[\x21-\x40\x5b-\x7e]+", name) for name in names)


# -- Termination ------------------------------------------------------------------------------


def test_termination_delete_is_204_and_the_upload_is_gone(api, store):
    """Termination > Requests > DELETE: MUST answer 204; later requests get 404 or 410."""
    path = path_of(create(api, 3))
    patch(api, path, 0, b"a")
    reply = api.request("DELETE", path, headers=V)
    assert reply.status == 204
    assert head(api, path).status in (404, 410)
    assert patch(api, path, 1, b"b").status in (404, 410)
    assert records(store) == []


# -- Concatenation ----------------------------------------------------------------------------


def partial(api, data: bytes) -> str:
    path = path_of(create(api, len(data), headers={"Upload-Concat": "partial"}))
    assert patch(api, path, 0, data).status == 204
    return path


def final(api, concat: str, headers=None):
    return api.request(
        "POST", "/files/", b"", "", {**V, "Upload-Concat": concat, **(headers or {})}
    )


def test_concatenation_is_advertised():
    """Concatenation: the Server MUST add concatenation to Tus-Extension (checked with the list
    in test_core_headers_tus_extension_lists_the_supported_extensions)."""
    assert "concatenation" in EXTENSIONS


def test_concatenation_final_is_the_parts_in_order_and_their_length(api, chunky, signal_log):
    """Concatenation: the final length MUST be the sum of the parts'; the parts MUST be
    concatenated in the order listed."""
    a, b = partial(api, b"AAAA"), partial(api, b"bb")
    reply = final(api, f"final;{b} {a}")
    assert reply.status == 201
    got = head(api, path_of(reply))
    assert got.headers["upload-length"] == "6"
    (done,) = [kw for name, kw in signal_log if name == "upload_completed"]
    with open(f"{chunky.MEDIA_ROOT}/{done['final_name']}", "rb") as f:
        assert f.read() == b"bbAAAA"


def test_concatenation_final_creation_with_upload_length_is_refused(api, store):
    """Concatenation: the Client MUST NOT include Upload-Length in the final upload creation
    (the Server refuses it)."""
    a = partial(api, b"abc")
    assert final(api, f"final;{a}", {"Upload-Length": "3"}).status == 400
    assert len(records(store)) == 1


def test_concatenation_patch_on_a_final_upload_is_403(api):
    """Concatenation: PATCH against a final upload MUST get 403 and modify nothing."""
    path = path_of(final(api, f"final;{partial(api, b'abc')}"))
    for offset, body in ((3, b"d"), (0, b"abc"), (3, b"")):
        assert patch(api, path, offset, body).status == 403
    got = head(api, path)
    assert (got.headers["upload-offset"], got.headers["upload-length"]) == ("3", "3")


def test_concatenation_head_of_a_final_upload_after_concatenation(api):
    """Concatenation: after concatenation, Upload-Offset and Upload-Length MUST be set and equal."""
    path = path_of(final(api, f"final;{partial(api, b'ab')} {partial(api, b'cd')}"))
    got = head(api, path)
    assert got.headers["upload-offset"] == got.headers["upload-length"] == "4"


def test_concatenation_head_of_a_partial_upload_has_its_offset(api):
    """Concatenation: HEAD of a partial upload MUST contain Upload-Offset."""
    path = path_of(create(api, 4, headers={"Upload-Concat": "partial"}))
    assert head(api, path).headers["upload-offset"] == "0"
    patch(api, path, 0, b"ab")
    assert head(api, path).headers["upload-offset"] == "2"


def test_concatenation_unfinished_is_announced_and_accepted(api):
    """Concatenation: a final upload of parts still in progress MUST be announced with
    concatenation-unfinished (it is, and accepted)."""
    assert "concatenation-unfinished" in options(api).headers["tus-extension"].split(",")
    part = path_of(create(api, 3, headers={"Upload-Concat": "partial"}))
    assert final(api, f"final;{part}").status == 201


def test_concatenation_head_gives_upload_concat_back_as_received(api):
    """Concatenation: HEAD of a partial or final upload MUST include Upload-Concat as received."""
    a = partial(api, b"xy")
    assert head(api, a).headers["upload-concat"] == "partial"
    concat = f"final;http://testserver{a} {a}"
    path = path_of(final(api, concat))
    assert head(api, path).headers["upload-concat"] == concat
