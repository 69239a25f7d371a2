"""The IETF resumable-upload dialect through Django's test client, on fakeredis and real Redis.

The draft's MUSTs, each with its section, are in test_rufh_conformance.py; this file checks the
flows a client goes through, the version switch, the completion hand-off and bad input.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest
from django.test import Client

from chunky_redis import runtime

URL = "/resumable/"
PARTIAL = "application/partial-upload"


def headers(version: int | None = 8, **fields: str) -> dict[str, str]:
    """Django test-client keyword arguments for the given request header fields."""
    out = {"HTTP_" + k.upper(): v for k, v in fields.items()}
    if version is not None:
        out["HTTP_UPLOAD_DRAFT_INTEROP_VERSION"] = str(version)
    return out


def create(client: Client, data: bytes = b"", *, complete: bool, version: int = 8, **fields: str):
    if version == 3:
        fields["upload_incomplete"] = "?0" if complete else "?1"
    else:
        fields["upload_complete"] = "?1" if complete else "?0"
    return client.post(
        URL, data=data, content_type="application/octet-stream", **headers(version, **fields)
    )


def append(
    client: Client, location: str, data: bytes, offset: int, *, complete: bool, version: int = 8
):
    fields = {"upload_offset": str(offset)}
    if version == 3:
        fields["upload_incomplete"] = "?0" if complete else "?1"
    else:
        fields["upload_complete"] = "?1" if complete else "?0"
    return client.patch(location, data=data, content_type=PARTIAL, **headers(version, **fields))


def final_bytes(chunky, upload_id: str) -> bytes:
    upload = runtime.get_store().get(upload_id)
    assert upload is not None and upload.status == "complete", upload
    return (Path(chunky.MEDIA_ROOT) / upload.final_name).read_bytes()


def upload_in_parts(client: Client, data: bytes, parts: list[int], version: int = 8):
    """Create with the first part, append the rest; returns the last response and the URL."""
    first = data[: parts[0]]
    reply = create(
        client,
        first,
        complete=len(parts) == 1,
        version=version,
        upload_length=str(len(data)),
    )
    location = reply["Location"]
    offset = parts[0]
    for i, size in enumerate(parts[1:], start=2):
        reply = append(
            client, location, data[offset : offset + size], offset, complete=i == len(parts)
        )
        offset += size
    return reply, location


@pytest.mark.parametrize("version", [3, 4, 5, 6, 7, 8])
def test_every_version_uploads_in_parts_and_completes_once(chunky, signal_log, version):
    client, data = Client(), b"resumable " * 1000
    reply = create(client, data[:4000], complete=False, version=version, upload_length="10000")
    assert reply.status_code == 201
    assert reply["Upload-Offset"] == "4000"
    location = reply["Location"]
    assert location.startswith("http://testserver/resumable/")
    head = client.head(location, **headers(version))
    assert head.status_code == 204 and head["Upload-Offset"] == "4000"
    assert head["Upload-Length"] == "10000"
    middle = append(client, location, data[4000:9000], 4000, complete=False, version=version)
    assert middle.status_code == (201 if version <= 6 else 204)
    assert middle["Upload-Offset"] == "9000"
    last = append(client, location, data[9000:], 9000, complete=True, version=version)
    assert last.status_code == 200, last.content
    body = last.json()
    assert body["upload_id"] in location and body["size"] == 10000
    assert last["Upload-Offset"] == "10000"
    upload_id = body["upload_id"]
    assert final_bytes(chunky, upload_id) == data
    completed = [kw for name, kw in signal_log if name == "upload_completed"]
    assert len(completed) == 1 and completed[0]["upload_id"] == upload_id
    assert completed[0]["checksum"] == hashlib.md5(data).hexdigest()


def test_version_3_speaks_upload_incomplete(chunky):
    client = Client()
    reply = create(client, b"abc", complete=False, version=3, upload_length="6")
    assert reply["Upload-Incomplete"] == "?1" and "Upload-Complete" not in reply
    head = client.head(reply["Location"], **headers(3))
    assert head["Upload-Incomplete"] == "?1"
    # Version 3: without Upload-Incomplete the request ends the upload.
    done = client.patch(
        reply["Location"], data=b"def", content_type=PARTIAL, **headers(3, upload_offset="3")
    )
    assert done.status_code == 200 and done["Upload-Incomplete"] == "?0"
    assert final_bytes(chunky, done.json()["upload_id"]) == b"abcdef"


@pytest.mark.parametrize("version, status", [(5, 201), (6, 415), (8, 415)])
def test_append_content_type_is_checked_from_version_6(chunky, version, status):
    client = Client()
    location = create(client, complete=False, version=version, upload_length="3")["Location"]
    reply = client.patch(
        location,
        data=b"abc",
        content_type="application/offset+octet-stream",
        **headers(version, upload_offset="0", upload_complete="?0"),
    )
    assert reply.status_code == status, reply.content
    head = client.head(location, **headers(version))
    assert head["Upload-Offset"] == ("3" if status == 201 else "0")


@pytest.mark.parametrize("size", [0, 1, 4096, 4097])
def test_body_size_edges_in_one_request(chunky, signal_log, size):
    """Empty, one byte, exactly one chunk (4096 here), one byte more: created complete at once."""
    client, data = Client(), bytes(range(256)) * 17
    data = data[:size]
    reply = create(client, data, complete=True)
    assert reply.status_code == 200, reply.content
    assert reply["Upload-Complete"] == "?1" and reply["Upload-Offset"] == str(size)
    assert final_bytes(chunky, reply.json()["upload_id"]) == data
    assert [name for name, _ in signal_log].count("upload_completed") == 1


@pytest.mark.parametrize("size", [1, 4096, 4097])
def test_body_size_edges_appended_after_an_empty_creation(chunky, size):
    client, data = Client(), (b"0123456789abcdef" * 300)[:size]
    location = create(client, complete=False)["Location"]
    # An unknown length: the completing append states it (offset + Content-Length).
    reply = append(client, location, data, 0, complete=True)
    assert reply.status_code == 200, reply.content
    assert final_bytes(chunky, reply.json()["upload_id"]) == data


def test_an_empty_append_completes_what_was_sent(chunky):
    client = Client()
    reply = create(client, b"hello", complete=False)
    location = reply["Location"]
    done = append(client, location, b"", 5, complete=True)
    assert done.status_code == 200 and done.json()["size"] == 5


def test_data_flows_before_the_length_is_known_and_the_last_append_fixes_it(chunky):
    client = Client()
    location = create(client, complete=False)["Location"]
    assert "Upload-Length" not in client.head(location, **headers())
    assert append(client, location, b"abc", 0, complete=False).status_code == 204
    head = client.head(location, **headers())
    assert head["Upload-Offset"] == "3" and "Upload-Length" not in head
    done = append(client, location, b"def", 3, complete=True)
    assert done.status_code == 200 and done.json()["size"] == 6
    assert final_bytes(chunky, done.json()["upload_id"]) == b"abcdef"


def test_upload_length_on_an_append_fixes_the_length(chunky):
    client = Client()
    location = create(client, complete=False)["Location"]
    reply = client.patch(
        location,
        data=b"abc",
        content_type=PARTIAL,
        **headers(upload_offset="0", upload_complete="?0", upload_length="6"),
    )
    assert reply.status_code == 204, reply.content
    assert client.head(location, **headers())["Upload-Length"] == "6"
    again = client.patch(
        location,
        data=b"d",
        content_type=PARTIAL,
        **headers(upload_offset="3", upload_complete="?0", upload_length="7"),
    )
    assert again.status_code == 400 and again.json()["type"].endswith("#inconsistent-upload-length")


def test_offset_mismatch_is_a_409_problem_and_changes_nothing(chunky):
    client = Client()
    location = create(client, b"hello", complete=False, upload_length="11")["Location"]
    reply = append(client, location, b" world", 3, complete=True)
    assert reply.status_code == 409
    assert reply["Content-Type"] == "application/problem+json"
    assert reply["Upload-Offset"] == "5" and reply["Upload-Complete"] == "?0"
    problem = reply.json()
    assert problem["type"].endswith("#mismatching-upload-offset")
    assert (problem["expected-offset"], problem["provided-offset"]) == (5, 3)
    assert client.head(location, **headers())["Upload-Offset"] == "5"


def test_a_body_past_the_length_is_refused_before_a_byte_is_written(chunky):
    client = Client()
    location = create(client, b"abc", complete=False, upload_length="5")["Location"]
    reply = append(client, location, b"defgh", 3, complete=False)
    assert reply.status_code == 400
    assert reply.json()["type"].endswith("#inconsistent-upload-length")
    assert client.head(location, **headers())["Upload-Offset"] == "3"
    upload_id = location.rstrip("/").rsplit("/", 1)[1]
    assert runtime.get_storage().size(upload_id) == 3


def test_completing_below_the_declared_length_is_inconsistent(chunky):
    client = Client()
    location = create(client, b"abc", complete=False, upload_length="10")["Location"]
    reply = append(client, location, b"de", 3, complete=True)
    assert reply.status_code == 400
    assert reply.json()["type"].endswith("#inconsistent-upload-length")


def test_cancellation_removes_record_and_bytes(chunky):
    client = Client()
    location = create(client, b"abc", complete=False, upload_length="10")["Location"]
    upload_id = location.rstrip("/").rsplit("/", 1)[1]
    assert client.delete(location, **headers()).status_code == 204
    assert runtime.get_storage().size(upload_id) is None
    assert client.head(location, **headers()).status_code == 404
    assert client.delete(location, **headers()).status_code == 404


def test_a_completed_upload_refuses_appends_and_says_complete(chunky, signal_log):
    client = Client()
    reply = create(client, b"abc", complete=False, upload_length="3")
    location = reply["Location"]
    assert append(client, location, b"", 3, complete=True).status_code == 200
    again = append(client, location, b"", 3, complete=True)
    assert again.status_code == 400 and again.json()["code"] == "already_complete"
    assert again.json()["type"].endswith("#completed-upload")
    head = client.head(location, **headers())
    assert head["Upload-Complete"] == "?1" and head["Upload-Offset"] == "3"
    assert [name for name, _ in signal_log].count("upload_completed") == 1


def test_the_max_size_limit_is_announced_and_enforced(chunky):
    chunky.CHUNKY_REDIS_MAX_BYTES = 10
    client = Client()
    options = client.options(URL, **headers())
    assert options["Upload-Limit"] == "max-size=10"
    reply = create(client, b"x" * 11, complete=True)
    assert reply.status_code == 413 and reply["Upload-Limit"].startswith("max-size=10")


@pytest.mark.parametrize(
    "fields, code",
    [
        ({"upload_draft_interop_version": "2"}, "unsupported_interop_version"),
        ({"upload_draft_interop_version": "nine"}, "unsupported_interop_version"),
        ({"upload_complete": "yes"}, "missing_upload_complete"),
        ({"upload_complete": "?0", "upload_length": "2", "content_length": "x"}, "bad_body"),
    ],
)
def test_bad_creations_are_4xx_problems_and_create_nothing(chunky, fields, code):
    client = Client()
    extra = {"HTTP_" + k.upper(): v for k, v in fields.items() if k != "content_length"}
    if "content_length" in fields:
        extra["CONTENT_LENGTH"] = fields["content_length"]
    extra.setdefault("HTTP_UPLOAD_DRAFT_INTEROP_VERSION", "8")
    reply = client.post(URL, data=b"abc", content_type="text/plain", **extra)
    assert 400 <= reply.status_code < 500, reply.content
    assert reply["Content-Type"] == "application/problem+json"
    assert reply.json()["code"] == code
    assert (
        not list(Path(chunky.CHUNKY_REDIS_UPLOAD_DIR).glob("*"))
        if Path(chunky.CHUNKY_REDIS_UPLOAD_DIR).exists()
        else True
    )


@pytest.mark.parametrize(
    "method, fields, status",
    [
        ("patch", {"upload_complete": "?0"}, 400),  # no Upload-Offset
        ("patch", {"upload_offset": "-1", "upload_complete": "?0"}, 400),
        ("patch", {"upload_offset": "0"}, 400),  # no Upload-Complete
        ("post", {}, 405),
        ("put", {}, 405),
    ],
)
def test_bad_requests_to_an_upload_never_500(chunky, method, fields, status):
    client = Client()
    location = create(client, b"abc", complete=False, upload_length="6")["Location"]
    reply = getattr(client, method)(
        location, data=b"def", content_type=PARTIAL, **headers(**fields)
    )
    assert reply.status_code == status, reply.content
    assert client.head(location, **headers())["Upload-Offset"] == "3"


def test_unknown_and_malformed_upload_ids_are_404(chunky):
    client = Client()
    assert client.head(URL + "0" * 32 + "/", **headers()).status_code == 404
    assert client.head(URL + "not-an-id/", **headers()).status_code == 404


def test_another_owners_upload_is_not_found(chunky, django_user_model):
    alice = django_user_model.objects.create_user("alice", password="pw")
    bob = django_user_model.objects.create_user("bob", password="pw")
    a, b = Client(), Client()
    a.force_login(alice)
    b.force_login(bob)
    location = create(a, b"abc", complete=False, upload_length="6")["Location"]
    assert b.head(location, **headers()).status_code == 404
    assert append(b, location, b"def", 3, complete=True).status_code == 404
    assert a.head(location, **headers())["Upload-Offset"] == "3"


def test_filename_comes_from_content_disposition_sanitized(chunky):
    client = Client()
    reply = create(
        client,
        b"abc",
        complete=True,
        content_disposition='inline; filename="../../etc/passwd"',
    )
    assert reply.json()["filename"] == "passwd"


# -- digests (RFC 9530) ---------------------------------------------------------------------


def sf_digest(algorithm: str, data: bytes) -> str:
    name = {"sha-256": "sha256", "sha-512": "sha512", "md5": "md5"}[algorithm]
    return f"{algorithm}=:{base64.b64encode(hashlib.new(name, data).digest()).decode()}:"


def test_content_digest_is_checked_per_request(chunky):
    client = Client()
    location = create(client, b"abc", complete=False, upload_length="9")["Location"]
    good = client.patch(
        location,
        data=b"def",
        content_type=PARTIAL,
        **headers(
            upload_offset="3", upload_complete="?0", content_digest=sf_digest("sha-256", b"def")
        ),
    )
    assert good.status_code == 204, good.content
    bad = client.patch(
        location,
        data=b"ghi",
        content_type=PARTIAL,
        **headers(
            upload_offset="6", upload_complete="?0", content_digest=sf_digest("sha-256", b"GHI")
        ),
    )
    assert bad.status_code == 400 and bad.json()["code"] == "chunk_checksum_mismatch"
    assert bad["Upload-Complete"] == "?0"
    assert client.head(location, **headers())["Upload-Offset"] == "6"  # the chunk was discarded
    retry = append(client, location, b"ghi", 6, complete=True)
    assert retry.status_code == 200
    assert final_bytes(chunky, retry.json()["upload_id"]) == b"abcdefghi"


@pytest.mark.parametrize(
    "value, status",
    [
        ("sha-256=abc", 400),  # not a byte sequence
        ("sha-256=:not base64!:", 400),
        ("not a dictionary", 400),
        ("crc32c=:AAAAAA==:", 200),  # an algorithm the server does not compute is ignored
    ],
)
def test_bad_or_unknown_content_digests(chunky, value, status):
    reply = create(Client(), b"abc", complete=True, content_digest=value)
    assert reply.status_code == status, reply.content
    if status == 400:
        assert reply.json()["code"] == "bad_digest_field"


def test_content_digest_of_a_creation_with_data(chunky):
    reply = create(Client(), b"abc", complete=True, content_digest=sf_digest("md5", b"abd"))
    assert reply.status_code == 400 and reply.json()["code"] == "chunk_checksum_mismatch"


def test_repr_digest_at_creation_is_checked_from_the_streaming_state(chunky, monkeypatch):
    """No file read at completion: the storage's digest() must not be called."""
    storage_class = type(runtime.get_storage())

    def no_read(*args, **kwargs):
        raise AssertionError("the file was read again")

    monkeypatch.setattr(storage_class, "digest", no_read)
    client, data = Client(), b"0123456789" * 1000
    reply = create(
        client,
        data[:4000],
        complete=False,
        upload_length="10000",
        repr_digest=sf_digest("sha-256", data),
    )
    done = append(client, reply["Location"], data[4000:], 4000, complete=True)
    assert done.status_code == 200, done.content
    assert done["Repr-Digest"] == sf_digest("sha-256", data)


def test_a_wrong_repr_digest_fails_the_upload(chunky, signal_log):
    client = Client()
    reply = create(
        client, b"abc", complete=False, upload_length="6", repr_digest=sf_digest("sha-256", b"x")
    )
    location = reply["Location"]
    done = append(client, location, b"def", 3, complete=True)
    assert done.status_code == 400 and done.json()["code"] == "repr_digest_mismatch"
    assert done["Upload-Complete"] == "?1"  # resuming would not help
    assert client.head(location, **headers()).status_code == 404
    assert not [name for name, _ in signal_log if name == "upload_completed"]


def test_repr_digest_on_the_completing_request(chunky):
    client = Client()
    location = create(client, b"abc", complete=False, upload_length="6")["Location"]
    done = client.patch(
        location,
        data=b"def",
        content_type=PARTIAL,
        **headers(upload_offset="3", upload_complete="?1", repr_digest=sf_digest("md5", b"abcdef")),
    )
    assert done.status_code == 200, done.content


def test_want_repr_digest_adds_an_algorithm(chunky):
    reply = create(Client(), b"abc", complete=True, want_repr_digest="sha-512=5, sha-256=0")
    assert reply.status_code == 200
    assert sf_digest("sha-512", b"abc") in reply["Repr-Digest"]
    assert sf_digest("sha-256", b"abc") in reply["Repr-Digest"]  # the view's own, always


@pytest.mark.parametrize("version, status", [(5, 404), (6, 404), (7, 410), (8, 410)])
def test_an_expired_upload_is_404_up_to_version_6_and_410_after(chunky, version, status):
    client = Client()
    location = create(client, b"abc", complete=False, upload_length="6")["Location"]
    store = runtime.get_store()
    upload_id = location.rstrip("/").rsplit("/", 1)[1]
    store.redis.hset(store.record_key(upload_id), "expires", store.now() - 1000)
    assert client.head(location, **headers(version)).status_code == status


def test_a_creation_body_longer_than_its_upload_length_creates_nothing(chunky):
    reply = create(Client(), b"abcdef", complete=False, upload_length="4")
    assert reply.status_code == 400
    assert reply.json()["type"].endswith("#inconsistent-upload-length")
    assert "Location" not in reply
    chunks = Path(chunky.CHUNKY_REDIS_UPLOAD_DIR)
    assert not chunks.exists() or not any(chunks.iterdir())


def test_get_answers_like_head_and_options_on_an_upload(chunky):
    client = Client()
    location = create(client, b"abc", complete=False, upload_length="6")["Location"]
    got = client.get(location, **headers())
    assert got.status_code == 204 and got["Upload-Offset"] == "3" and not got.content
    options = client.options(location, **headers())
    assert options.status_code == 204
    assert options["Allow"] == "HEAD, GET, PATCH, DELETE, OPTIONS"
    assert client.post(URL, **headers()).status_code == 400  # no Upload-Complete
    assert client.get(URL, **headers()).status_code == 405


def test_a_failed_hand_off_is_a_503_and_the_completion_can_be_sent_again(
    chunky, signal_log, monkeypatch
):
    client = Client()
    location = create(client, b"abc", complete=False, upload_length="3")["Location"]
    real = runtime._completion_handler

    def broken(upload):
        raise ConnectionError("broker down")

    monkeypatch.setattr(runtime, "_completion_handler", broken)
    down = append(client, location, b"", 3, complete=True)
    assert down.status_code == 503 and down["Retry-After"] == "1"
    assert down["Upload-Complete"] == "?0"
    assert client.head(location, **headers())["Upload-Complete"] == "?0"
    monkeypatch.setattr(runtime, "_completion_handler", real)
    again = append(client, location, b"", 3, complete=True)
    assert again.status_code == 200, again.content
    assert [name for name, _ in signal_log].count("upload_completed") == 1
