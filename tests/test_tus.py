"""The tus 1.0 dialect through Django's test client, on fakeredis and the real Redis:
whole uploads, body-size edges, completion and its signal, errors as JSON."""

from __future__ import annotations

import hashlib
import os

import pytest

from chunky_redis import runtime
from tests.support.api import ClientApi
from tests.support.tus import V, checksum, create, head, metadata, patch, path_of

pytestmark = pytest.mark.django_db

CHUNK = 1000


@pytest.fixture
def api(chunky):
    return ClientApi()


def upload_in_chunks(api, data: bytes, chunk: int = CHUNK, **create_headers) -> str:
    path = path_of(create(api, len(data), headers=create_headers))
    offset = 0
    while offset < len(data):
        part = data[offset : offset + chunk]
        reply = patch(api, path, offset, part)
        assert reply.status == 204, reply.body
        offset += len(part)
        assert reply.headers["upload-offset"] == str(offset)
    return path


def upload_id(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[1]


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7])
def test_body_size_edges_complete_once_with_the_right_bytes(api, chunky, signal_log, size):
    data = os.urandom(size)
    path = upload_in_chunks(api, data, filename="edge.bin", filetype="application/x-edge")
    reply = head(api, path)
    assert reply.status == 200
    assert reply.headers["upload-offset"] == reply.headers["upload-length"] == str(size)
    done = [kw for name, kw in signal_log if name == "upload_completed"]
    assert len(done) == 1
    assert done[0]["upload_id"] == upload_id(path)
    assert done[0]["size"] == size
    assert done[0]["checksum"] == hashlib.md5(data).hexdigest()
    with open(os.path.join(chunky.MEDIA_ROOT, done[0]["final_name"]), "rb") as f:
        assert f.read() == data


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1])
def test_body_size_edges_in_the_creation_request(api, chunky, signal_log, size):
    data = os.urandom(size)
    reply = create(api, size, data)
    path = path_of(reply)
    assert reply.headers["upload-offset"] == str(size)
    assert "upload-expires" not in reply.headers  # complete: it no longer expires
    done = [kw for name, kw in signal_log if name == "upload_completed"]
    assert [kw["upload_id"] for kw in done] == [upload_id(path)]
    with open(os.path.join(chunky.MEDIA_ROOT, done[0]["final_name"]), "rb") as f:
        assert f.read() == data


def test_metadata_is_kept_and_given_to_the_receivers(api, signal_log):
    meta = metadata(filename="report ü.pdf", filetype="application/pdf", project="x")
    reply = create(api, 3, headers={"Upload-Metadata": meta + ",empty"})
    path = path_of(reply)
    got = head(api, path)
    assert got.headers["upload-metadata"] == meta + ",empty"
    assert patch(api, path, 0, b"abc").status == 204
    (done,) = [kw for name, kw in signal_log if name == "upload_completed"]
    assert done["filename"] == "report ü.pdf"
    assert done["extra"]["filetype"] == "application/pdf"
    assert done["extra"]["tus_metadata"] == {
        "filename": "report ü.pdf",
        "filetype": "application/pdf",
        "project": "x",
        "empty": "",
    }


def test_deferred_length_declared_on_the_last_patch(api, signal_log):
    path = path_of(create(api, None))
    assert head(api, path).headers["upload-defer-length"] == "1"
    assert patch(api, path, 0, b"a" * 10).status == 204
    assert "upload-length" not in head(api, path).headers
    reply = patch(api, path, 10, b"b" * 5, headers={"Upload-Length": "15"})
    assert reply.status == 204 and reply.headers["upload-offset"] == "15"
    got = head(api, path)
    assert got.headers["upload-length"] == "15"
    assert "upload-defer-length" not in got.headers
    assert [kw["size"] for name, kw in signal_log if name == "upload_completed"] == [15]


def test_each_request_asks_for_the_service_once(api, monkeypatch, signal_log):
    """The dialect stays thin (bench/tus_dialect.py): a request asks for its service once, even
    a PATCH that fixes the length, appends and completes; and the service, with its store and
    scripts, is built once for all of them (runtime.shared_service)."""
    from chunky_redis import runtime
    from chunky_redis.protocols import hooks

    asked, built = [], []
    real_shared, real_build = hooks.shared_service, runtime.get_service
    monkeypatch.setattr(hooks, "shared_service", lambda: asked.append(1) or real_shared())
    monkeypatch.setattr(runtime, "get_service", lambda: built.append(1) or real_build())
    runtime.forget_shared_service()
    path = path_of(create(api, None))
    assert patch(api, path, 0, b"a" * 10).status == 204
    reply = patch(api, path, 10, b"b" * 5, headers={"Upload-Length": "15"})
    assert reply.status == 204 and reply.headers["upload-offset"] == "15"
    assert head(api, path).status == 200
    assert len(asked) == 4  # POST, PATCH, PATCH, HEAD
    assert len(built) == 1
    assert [kw["size"] for name, kw in signal_log if name == "upload_completed"] == [15]


def test_deferred_length_may_not_pass_the_size_limit(api, chunky):
    chunky.CHUNKY_REDIS_MAX_BYTES = 20
    path = path_of(create(api, None))
    assert patch(api, path, 0, b"a" * 15).status == 204
    reply = patch(api, path, 15, b"b" * 6)
    assert reply.status == 413 and reply.data["code"] == "too_large"
    assert head(api, path).headers["upload-offset"] == "15"


def test_a_checksummed_patch_is_checked(api, signal_log):
    path = path_of(create(api, 6))
    good = patch(api, path, 0, b"abc", headers={"Upload-Checksum": checksum("sha256", b"abc")})
    assert good.status == 204
    bad = patch(api, path, 3, b"XYZ", headers={"Upload-Checksum": checksum("sha1", b"def")})
    assert bad.status == 460
    assert bad.data["code"] == "chunk_checksum_mismatch"
    assert bad.data["expected"] == hashlib.sha1(b"def").hexdigest()
    assert head(api, path).headers["upload-offset"] == "3"
    fixed = patch(api, path, 3, b"def", headers={"Upload-Checksum": checksum("md5", b"def")})
    assert fixed.status == 204
    (done,) = [kw for name, kw in signal_log if name == "upload_completed"]
    assert done["checksum"] == hashlib.md5(b"abcdef").hexdigest()


def test_head_after_completion_and_a_repeated_last_patch(api):
    path = path_of(create(api, 4))
    assert patch(api, path, 0, b"abcd").status == 204
    again = patch(api, path, 4, b"")
    assert again.status == 204 and again.headers["upload-offset"] == "4"
    stale = patch(api, path, 0, b"abcd")
    assert stale.status == 409 and stale.headers["upload-offset"] == "4"
    more = patch(api, path, 4, b"e")
    assert more.status == 403 and more.data["code"] == "already_complete"
    reply = head(api, path)
    assert (reply.headers["upload-offset"], reply.headers["upload-length"]) == ("4", "4")


def test_head_hands_on_an_upload_whose_completion_was_lost(api, signal_log, monkeypatch):
    path = path_of(create(api, 2))
    monkeypatch.setattr(runtime, "_completion_handler", _queue_down)
    reply = patch(api, path, 0, b"ab")
    assert reply.status == 503 and reply.headers["retry-after"] == "1"
    still_down = head(api, path)  # HEAD tries again, and answers the facts whatever happens
    assert still_down.status == 200 and still_down.headers["upload-offset"] == "2"
    monkeypatch.undo()
    assert not [kw for name, kw in signal_log if name == "upload_completed"]
    assert head(api, path).headers["upload-offset"] == "2"
    assert len([kw for name, kw in signal_log if name == "upload_completed"]) == 1
    head(api, path)
    assert len([kw for name, kw in signal_log if name == "upload_completed"]) == 1


def _queue_down(upload):
    raise ConnectionError("the broker is down")


def test_termination(api, chunky):
    path = path_of(create(api, 10))
    assert patch(api, path, 0, b"abc").status == 204
    reply = api.request("DELETE", path, headers=V)
    assert reply.status == 204 and reply.headers["tus-resumable"] == "1.0.0"
    assert head(api, path).status == 404
    assert not os.path.exists(
        os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id(path) + ".part")
    )


def test_method_override(api):
    path = path_of(create(api, 3))
    reply = api.request(
        "POST",
        path,
        b"abc",
        "application/offset+octet-stream",
        {**V, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"},
    )
    assert reply.status == 204 and reply.headers["upload-offset"] == "3"
    gone = api.request("POST", path, b"", "", {**V, "X-HTTP-Method-Override": "DELETE"})
    assert gone.status == 403  # complete: no longer terminated


def test_another_users_upload_is_not_found(api, chunky, django_user_model):
    chunky.CHUNKY_REDIS_ALLOW_ANONYMOUS = False
    alice = django_user_model.objects.create_user("alice", password="pw")
    bob = django_user_model.objects.create_user("bob", password="pw")
    assert create(api, 3).status == 403
    api.client.force_login(alice)
    path = path_of(create(api, 3))
    api.client.force_login(bob)
    for reply in (
        head(api, path),
        patch(api, path, 0, b"abc"),
        api.request("DELETE", path, headers=V),
    ):
        assert reply.status == 404
    api.client.force_login(alice)
    assert patch(api, path, 0, b"abc").status == 204


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "code"),
    [
        ("POST", "/files/", {"Upload-Length": "x"}, 400, "bad_header"),
        ("POST", "/files/", {"Upload-Length": "-1"}, 400, "bad_header"),
        ("POST", "/files/", {}, 400, "bad_header"),
        ("POST", "/files/", {"Upload-Length": "1", "Upload-Defer-Length": "1"}, 400, "bad_header"),
        ("POST", "/files/", {"Upload-Defer-Length": "2"}, 400, "bad_header"),
        ("POST", "/files/", {"Upload-Length": "1", "Upload-Metadata": "a b c"}, 400, "bad_header"),
        ("POST", "/files/", {"Upload-Length": "1", "Upload-Metadata": "a !!"}, 400, "bad_header"),
        ("POST", "/files/", {"Upload-Length": "1", "Upload-Metadata": "a,a"}, 400, "bad_header"),
        ("GET", "/files/", {}, 405, "method_not_allowed"),
        ("PATCH", "/files/", {}, 405, "method_not_allowed"),
        ("HEAD", "/files/0123", {}, 404, "not_found"),
        ("HEAD", "/files/" + "0" * 32, {}, 404, "not_found"),
        ("GET", "/files/a/b/c", {}, 404, "not_found"),
    ],
)
def test_bad_requests_are_json_and_change_nothing(api, store, method, path, headers, status, code):
    reply = api.request(method, path, b"", "", {**V, **headers})
    assert reply.status == status
    if method != "HEAD":
        assert reply.is_json and reply.data["code"] == code
    assert list(store.redis.scan_iter(match=f"{store.prefix}:*:upload")) == []


def test_patch_refusals(api):
    path = path_of(create(api, 5))
    cases = [
        (patch(api, path, 0, b"abc", content_type="application/octet-stream"), 415),
        (patch(api, path, 1, b"abc"), 409),
        (patch(api, path, 0, b"abcdef"), 400),
        (patch(api, path, 0, b"abc", headers={"Upload-Checksum": "crc32 AAAA"}), 400),
        (patch(api, path, 0, b"abc", headers={"Upload-Checksum": "sha1 ***"}), 400),
        (patch(api, path, 0, b"abc", headers={"Upload-Checksum": "sha1"}), 400),
        (patch(api, path, 0, b"abc", headers={"Upload-Offset": "x"}), 400),
        (patch(api, path, 0, b"abc", headers={"Upload-Length": "6"}), 400),
        (api.request("PATCH", path, b"abc", "application/offset+octet-stream", V), 400),
    ]
    for reply, status in cases:
        assert reply.status == status, reply.body
        assert reply.is_json and reply.headers["tus-resumable"] == "1.0.0"
    assert head(api, path).headers["upload-offset"] == "0"


def test_creation_with_upload_whose_checksum_fails_says_where_the_upload_is(api):
    reply = create(api, 6, b"abc", headers={"Upload-Checksum": checksum("sha1", b"abd")})
    assert reply.status == 460 and reply.data["code"] == "chunk_checksum_mismatch"
    path = reply.headers["location"].split("testserver", 1)[1]
    assert head(api, path).headers["upload-offset"] == "0"  # created, the body discarded
    assert patch(api, path, 0, b"abcdef").status == 204


def test_the_owners_quota_applies(api, chunky, store):
    chunky.CHUNKY_REDIS_MAX_UPLOADS_IN_FLIGHT = 1
    first = path_of(create(api, 5))
    refused = create(api, 5)
    assert refused.status == 429 and refused.data["code"] == "too_many_uploads"
    assert len(list(store.redis.scan_iter(match=f"{store.prefix}:*:upload"))) == 1
    assert patch(api, first, 0, b"12345").status == 204  # complete: no longer in flight
    assert create(api, 5).status == 201


def partial(api, data: bytes) -> str:
    path = path_of(create(api, len(data), headers={"Upload-Concat": "partial"}))
    if data:
        assert patch(api, path, 0, data).status == 204
    return path


def test_concatenation_is_finalized_once_from_the_parts(api, chunky, store, signal_log):
    parts = [b"first-", b"", b"second-", b"third"]
    paths = [partial(api, data) for data in parts]
    assert head(api, paths[0]).headers["upload-concat"] == "partial"
    assert [name for name, _ in signal_log] == []  # a complete part is not finalized
    concat = "final;" + " ".join(f"http://testserver{p}" for p in paths) + " " + paths[0]
    meta = metadata(filename="joined.txt")
    reply = api.request(
        "POST", "/files/", b"", "", {**V, "Upload-Concat": concat, "Upload-Metadata": meta}
    )
    final = path_of(reply)
    data = b"".join(parts) + parts[0]
    (done,) = [kw for name, kw in signal_log if name == "upload_completed"]
    assert done["upload_id"] == upload_id(final) and done["filename"] == "joined.txt"
    assert done["size"] == len(data) and done["checksum"] == hashlib.md5(data).hexdigest()
    with open(os.path.join(chunky.MEDIA_ROOT, done["final_name"]), "rb") as f:
        assert f.read() == data
    got = head(api, final)
    assert got.headers["upload-offset"] == got.headers["upload-length"] == str(len(data))
    assert got.headers["upload-concat"] == concat
    refused = patch(api, final, len(data), b"x")
    assert refused.status == 403
    assert patch(api, final, 0, b"").status == 403
    for path in paths:  # the parts are gone, records and bytes
        assert head(api, path).status == 404
        assert not os.path.exists(
            os.path.join(chunky.CHUNKY_REDIS_UPLOAD_DIR, upload_id(path) + ".part")
        )


def test_a_final_upload_needs_parts_of_its_owner(api, django_user_model, chunky):
    done = partial(api, b"abc")
    cases = [
        (f"final;{done} /files/{'0' * 32}", {}, 404, "not_found"),
        (f"final;{done} /files/nope", {}, 400, "bad_header"),
        ("final;", {}, 400, "bad_header"),
        ("whole", {}, 400, "bad_header"),
        (f"final;{done}", {"Upload-Length": "3"}, 400, "bad_header"),
    ]
    for concat, headers, status, code in cases:
        reply = api.request("POST", "/files/", b"", "", {**V, "Upload-Concat": concat, **headers})
        assert (reply.status, reply.data["code"]) == (status, code), concat
    chunky.CHUNKY_REDIS_ALLOW_ANONYMOUS = False
    api.client.force_login(django_user_model.objects.create_user("eve", password="pw"))
    reply = api.request("POST", "/files/", b"", "", {**V, "Upload-Concat": f"final;{done}"})
    assert reply.status == 404
    assert head(api, done).status == 404  # eve cannot see it either; the owner still can


def test_concatenation_unfinished_is_handed_on_when_its_last_part_completes(
    api, chunky, signal_log
):
    a = partial(api, b"abc")
    b = path_of(create(api, 5, headers={"Upload-Concat": "partial"}))
    c = path_of(create(api, None, headers={"Upload-Concat": "partial"}))
    reply = api.request("POST", "/files/", b"", "", {**V, "Upload-Concat": f"final;{a} {b} {c}"})
    final = path_of(reply)
    assert "upload-offset" not in reply.headers
    waiting = head(api, final)
    assert "upload-offset" not in waiting.headers and "upload-length" not in waiting.headers
    assert patch(api, final, 0, b"x").status == 403
    assert patch(api, b, 0, b"12345").status == 204
    assert patch(api, c, 0, b"zz").status == 204  # its length still unknown
    assert [name for name, _ in signal_log] == []
    assert patch(api, c, 2, b"", headers={"Upload-Length": "2"}).status == 204  # the last part
    (done,) = [kw for name, kw in signal_log if name == "upload_completed"]
    assert done["upload_id"] == upload_id(final)
    with open(os.path.join(chunky.MEDIA_ROOT, done["final_name"]), "rb") as f:
        assert f.read() == b"abc12345zz"
    got = head(api, final)
    assert got.headers["upload-offset"] == got.headers["upload-length"] == "10"
    assert len([1 for name, _ in signal_log if name == "upload_completed"]) == 1


def test_a_concatenation_whose_last_part_completed_unseen_is_handed_on_by_head(
    api, chunky, signal_log, monkeypatch
):
    from chunky_redis.protocols.tus import TusUploadView

    monkeypatch.setattr(TusUploadView, "_finish_concatenations", lambda *args: None)
    a = path_of(create(api, 2, headers={"Upload-Concat": "partial"}))
    final = path_of(api.request("POST", "/files/", b"", "", {**V, "Upload-Concat": f"final;{a}"}))
    assert patch(api, a, 0, b"ok").status == 204
    assert [name for name, _ in signal_log] == []  # the part's request did not hand it on
    got = head(api, final)
    assert got.headers["upload-offset"] == "2"
    assert [kw["size"] for name, kw in signal_log if name == "upload_completed"] == [2]


def test_a_refused_patch_does_not_fix_the_deferred_length(api):
    path = path_of(create(api, None))
    assert patch(api, path, 0, b"abc").status == 204
    stale = patch(api, path, 0, b"abc", headers={"Upload-Length": "9"})
    assert stale.status == 409 and stale.headers["upload-offset"] == "3"
    too_long = patch(api, path, 3, b"defg", headers={"Upload-Length": "6"})
    assert too_long.status == 400 and too_long.data["code"] == "length_mismatch"
    assert head(api, path).headers["upload-defer-length"] == "1"
    assert patch(api, path, 3, b"def", headers={"Upload-Length": "6"}).status == 204


def test_concatenation_is_offered_only_where_the_chunk_storage_can_join_parts(
    api, store, monkeypatch
):
    """A chunk storage that cannot join parts (S3 multipart uploads in progress) drops the
    concatenation extensions from OPTIONS and refuses Upload-Concat before creating anything."""
    offered = api.request("OPTIONS", "/files/", b"", "", V).headers["tus-extension"].split(",")
    assert {"concatenation", "concatenation-unfinished"} <= set(offered)
    monkeypatch.setattr(type(runtime.get_service().storage), "can_concatenate", False)
    offered = api.request("OPTIONS", "/files/", b"", "", V).headers["tus-extension"].split(",")
    assert "creation" in offered and not [e for e in offered if e.startswith("concatenation")]
    before = set(store.redis.scan_iter())
    for concat in ("partial", "final;/files/0123456789abcdef0123456789abcdef"):
        reply = api.request(
            "POST", "/files/", b"", "", {**V, "Upload-Concat": concat, "Upload-Length": "3"}
        )
        assert reply.status == 400 and reply.data["code"] == "bad_header", reply.body
    assert set(store.redis.scan_iter()) == before
