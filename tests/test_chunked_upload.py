"""The django-chunked-upload 2.x dialect (chunky_redis.chunked_upload_urls, mounted at chunked/).

Through Django's test client, on fakeredis and on the real Redis (and the
cluster, marked live). The requests are the ones django-chunked-upload's
clients send: jQuery-File-Upload posts each chunk as multipart/form-data with
``upload_id`` among the form data, and completes with ``upload_id`` and ``md5``
as form fields.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.test.client import encode_multipart

from chunky_redis import runtime
from chunky_redis.core.errors import ChunkyError
from chunky_redis.protocols.chunked_upload import ChunkedUploadView

BOUNDARY = "chunkedBoundary0a1b2c3d"
UPLOAD = "/chunked/upload/"
COMPLETE = "/chunked/complete/"
CHUNK = 64 << 10


@pytest.fixture
def client(chunky) -> Client:
    return Client()


def post_chunk(
    client: Client,
    data: bytes,
    *,
    content_range: str | None = None,
    upload_id: str | None = None,
    filename: str = "data.bin",
    id_after_file: bool = False,
    fields: dict[str, Any] | None = None,
    path: str = UPLOAD,
):
    """A chunk as jQuery-File-Upload sends it: the form data, then the file (or the other way)."""
    form: dict[str, Any] = dict(fields or {})
    if upload_id is not None and not id_after_file:
        form["upload_id"] = upload_id
    form["file"] = SimpleUploadedFile(filename, data, "application/octet-stream")
    if upload_id is not None and id_after_file:
        form["upload_id"] = upload_id
    extra = {"HTTP_CONTENT_RANGE": content_range} if content_range else {}
    return client.post(
        path,
        encode_multipart(BOUNDARY, form),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        **extra,
    )


def send_file(client: Client, data: bytes, chunk: int = CHUNK, **kwargs: Any) -> str:
    """As jQuery-File-Upload with maxChunkSize: one request without Content-Range when
    the file fits in a chunk, else chunks with it; returns the upload id."""
    if len(data) <= chunk:
        reply = post_chunk(client, data, **kwargs)
        assert reply.status_code == 200, reply.content
        return str(reply.json()["upload_id"])
    upload_id = None
    for start in range(0, len(data), chunk):
        end = min(start + chunk, len(data)) - 1
        reply = post_chunk(
            client,
            data[start : end + 1],
            content_range=f"bytes {start}-{end}/{len(data)}",
            upload_id=upload_id,
            **kwargs,
        )
        assert reply.status_code == 200, reply.content
        body = reply.json()
        assert body["offset"] == end + 1
        upload_id = upload_id or body["upload_id"]
        assert body["upload_id"] == upload_id
    assert upload_id is not None
    return upload_id


def complete(client: Client, upload_id: str, data: bytes, **extra: Any):
    return client.post(
        COMPLETE, {"upload_id": upload_id, "md5": hashlib.md5(data).hexdigest()}, **extra
    )


def record(upload_id: str):
    return runtime.get_store().get(upload_id)


def final_bytes(settings, upload_id: str, signal_log) -> bytes:
    done = completed(signal_log, upload_id)
    assert len(done) == 1, done
    return (Path(settings.MEDIA_ROOT) / done[0]["final_name"]).read_bytes()


def completed(signal_log, upload_id: str) -> list[dict]:
    return [
        k for name, k in signal_log if name == "upload_completed" and k["upload_id"] == upload_id
    ]


def assert_error(reply, status: int, code: str) -> dict:
    assert reply.status_code == status, reply.content
    assert reply["Content-Type"] == "application/json"
    body = reply.json()
    assert body["code"] == code, body
    assert body["detail"]
    return dict(body)


# -- the happy paths ----------------------------------------------------------------


@pytest.mark.parametrize("id_after_file", [False, True], ids=["id-first", "id-after-file"])
def test_chunks_then_completion_answer_as_django_chunked_upload(
    client, chunky, signal_log, id_after_file
):
    data = os.urandom(3 * CHUNK + 17)
    first = post_chunk(
        client, data[:CHUNK], content_range=f"bytes 0-{CHUNK - 1}/{len(data)}", filename="a.bin"
    )
    assert first.status_code == 200, first.content
    body = first.json()
    assert list(body) == ["upload_id", "offset", "expires"]
    assert body["offset"] == CHUNK
    assert body["expires"].endswith("Z")
    upload_id = body["upload_id"]
    for start in range(CHUNK, len(data), CHUNK):
        end = min(start + CHUNK, len(data)) - 1
        reply = post_chunk(
            client,
            data[start : end + 1],
            content_range=f"bytes {start}-{end}/{len(data)}",
            upload_id=upload_id,
            id_after_file=id_after_file,
        )
        assert reply.status_code == 200, reply.content
        assert reply.json() == {
            "upload_id": upload_id,
            "offset": end + 1,
            "expires": body["expires"],
        }
    assert completed(signal_log, upload_id) == []

    done = complete(client, upload_id, data)
    assert done.status_code == 200, done.content
    assert done.json() == {
        "upload_id": upload_id,
        "filename": "a.bin",
        "offset": len(data),
        "status": "processing",
    }
    assert final_bytes(chunky, upload_id, signal_log) == data
    assert record(upload_id).status == "complete"


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1], ids=["empty", "1", "chunk", "chunk+1"])
def test_body_size_edges(client, chunky, signal_log, size):
    data = os.urandom(size)
    upload_id = send_file(client, data, filename="edge.bin")
    assert record(upload_id).offset == size
    done = complete(client, upload_id, data)
    assert done.status_code == 200, done.content
    assert final_bytes(chunky, upload_id, signal_log) == data
    upload = record(upload_id)
    assert (upload.status, upload.size, upload.filename) == ("complete", size, "edge.bin")


def test_a_second_completion_runs_nothing_again(client, chunky, signal_log):
    data = b"hello"
    upload_id = send_file(client, data)
    assert complete(client, upload_id, data).status_code == 200
    again = assert_error(complete(client, upload_id, data), 400, "already_complete")
    assert again["status"] == "complete"
    assert len(completed(signal_log, upload_id)) == 1
    later = post_chunk(client, b"x", upload_id=upload_id, content_range="bytes 5-5/6")
    assert_error(later, 400, "already_complete")


def test_completion_as_json_too(client, chunky, signal_log):
    data = b"json completion"
    upload_id = send_file(client, data)
    md5 = hashlib.md5(data).hexdigest()
    reply = client.post(
        COMPLETE, {"upload_id": upload_id, "md5": md5}, content_type="application/json"
    )
    assert reply.status_code == 200, reply.content
    assert final_bytes(chunky, upload_id, signal_log) == data


# -- refusals: the status django-chunked-upload gives, and nothing changes ----------------


def test_offset_mismatch_gives_the_server_offset_and_changes_nothing(client, chunky):
    data = os.urandom(3 * CHUNK)
    first = post_chunk(client, data[:CHUNK], content_range=f"bytes 0-{CHUNK - 1}/{len(data)}")
    upload_id = first.json()["upload_id"]
    stale = post_chunk(
        client, data[:CHUNK], content_range=f"bytes 0-{CHUNK - 1}/{len(data)}", upload_id=upload_id
    )
    body = assert_error(stale, 400, "offset_mismatch")
    assert body["offset"] == CHUNK
    ahead = post_chunk(
        client,
        data[2 * CHUNK :],
        content_range=f"bytes {2 * CHUNK}-{3 * CHUNK - 1}/{len(data)}",
        upload_id=upload_id,
    )
    assert assert_error(ahead, 400, "offset_mismatch")["offset"] == CHUNK
    assert record(upload_id).offset == CHUNK
    for start in (CHUNK, 2 * CHUNK):
        reply = post_chunk(
            client,
            data[start : start + CHUNK],
            content_range=f"bytes {start}-{start + CHUNK - 1}/{len(data)}",
            upload_id=upload_id,
        )
        assert reply.status_code == 200, reply.content
    assert complete(client, upload_id, data).status_code == 200


def test_unknown_or_malformed_upload_id_is_a_404(client, chunky):
    for upload_id in ("0" * 32, "not-an-id"):
        reply = post_chunk(client, b"abc", upload_id=upload_id, content_range="bytes 0-2/3")
        assert_error(reply, 404, "not_found")
        assert_error(
            client.post(COMPLETE, {"upload_id": upload_id, "md5": "0" * 32}), 404, "not_found"
        )
    assert not any(Path(chunky.CHUNKY_REDIS_UPLOAD_DIR).glob("*.part"))


def test_an_expired_upload_is_gone(client, chunky):
    chunky.CHUNKY_REDIS_EXPIRATION = 0.05  # 50 ms
    upload_id = post_chunk(client, b"abc", content_range="bytes 0-2/6").json()["upload_id"]
    time.sleep(0.2)
    reply = post_chunk(client, b"def", content_range="bytes 3-5/6", upload_id=upload_id)
    assert_error(reply, 410, "expired")
    assert_error(complete(client, upload_id, b"abcdef"), 410, "expired")


def test_no_file_or_not_multipart_is_a_400(client, chunky):
    reply = client.post(
        UPLOAD,
        encode_multipart(BOUNDARY, {"upload_id": ""}),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )
    assert_error(reply, 400, "missing_chunk")
    in_another_field = client.post(
        UPLOAD,
        encode_multipart(BOUNDARY, {"the_file": SimpleUploadedFile("f", b"abc")}),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )
    assert_error(in_another_field, 400, "missing_chunk")
    reply = client.post(UPLOAD, b"raw bytes", content_type="application/octet-stream")
    assert_error(reply, 400, "missing_chunk")
    assert not any(Path(chunky.CHUNKY_REDIS_UPLOAD_DIR).glob("*.part"))


def test_completion_needs_upload_id_and_md5(client, chunky):
    upload_id = send_file(client, b"abc")
    assert_error(
        client.post(COMPLETE, {"md5": hashlib.md5(b"abc").hexdigest()}), 400, "missing_upload_id"
    )
    assert_error(client.post(COMPLETE, {"upload_id": upload_id}), 400, "missing_checksum")
    assert record(upload_id).status == "uploading"


def test_wrong_md5_then_the_right_one(client, chunky, signal_log):
    upload_id = send_file(client, b"abc")
    assert_error(
        client.post(COMPLETE, {"upload_id": upload_id, "md5": "0" * 32}), 400, "checksum_mismatch"
    )
    assert record(upload_id).status == "uploading"
    assert complete(client, upload_id, b"abc").status_code == 200
    assert final_bytes(chunky, upload_id, signal_log) == b"abc"


def test_completion_before_every_byte(client, chunky):
    upload_id = post_chunk(client, b"abc", content_range="bytes 0-2/6").json()["upload_id"]
    body = assert_error(complete(client, upload_id, b"abc"), 400, "incomplete")
    assert (body["offset"], body["size"]) == (3, 6)


def test_size_over_the_limit_is_a_400_and_writes_nothing(client, chunky):
    chunky.CHUNKY_REDIS_MAX_BYTES = 10
    reply = post_chunk(client, b"abcde", content_range="bytes 0-4/11")
    assert_error(reply, 400, "too_large")
    assert_error(post_chunk(client, b"x" * 11), 400, "too_large")
    assert not any(Path(chunky.CHUNKY_REDIS_UPLOAD_DIR).glob("*.part"))


def test_bad_range_and_length_mismatch(client, chunky):
    assert_error(post_chunk(client, b"abc", content_range="bytes 0-9/5"), 400, "bad_content_range")
    assert_error(post_chunk(client, b"abc", content_range="bytes 0-3/9"), 400, "length_mismatch")
    upload_id = post_chunk(client, b"abc", content_range="bytes 0-2/9").json()["upload_id"]
    reply = post_chunk(client, b"def", content_range="bytes 3-5/10", upload_id=upload_id)
    assert_error(reply, 400, "total_changed")
    assert record(upload_id).offset == 3
    assert not any(
        p.name != f"{upload_id}.part" for p in Path(chunky.CHUNKY_REDIS_UPLOAD_DIR).glob("*.part")
    )


def raw_form(*parts: tuple[str, str | None, str]) -> bytes:
    """A multipart body with its parts in exactly this order: (name, filename or None, value)."""
    out = ""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n{value}\r\n"
    return (out + f"--{BOUNDARY}--\r\n").encode()


@pytest.mark.parametrize(
    "order",
    [
        ("upload_id", "file", "upload_id"),
        ("file", "upload_id", "upload_id"),
        ("upload_id", "file", "file"),
    ],
    ids=["ids-around-the-file", "ids-after-the-file", "two-files"],
)
def test_two_different_upload_ids_or_two_files_are_refused(client, chunky, order):
    first = post_chunk(client, b"abc", content_range="bytes 0-2/6").json()["upload_id"]
    other = post_chunk(client, b"xyz", content_range="bytes 0-2/6").json()["upload_id"]
    ids = iter([first, other])
    parts = [(name, "f", "def") if name == "file" else (name, None, next(ids)) for name in order]
    reply = client.post(
        UPLOAD,
        raw_form(*parts),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        HTTP_CONTENT_RANGE="bytes 3-5/6",
    )
    assert_error(reply, 400, "bad_body")
    assert record(first).offset == 3 and record(other).offset == 3


def test_a_held_lock_is_a_409(client, chunky):
    upload_id = post_chunk(client, b"abc", content_range="bytes 0-2/6").json()["upload_id"]
    store = runtime.get_store()
    store.redis.set(store.lock_key(upload_id), "someone", px=10_000)
    reply = post_chunk(client, b"def", content_range="bytes 3-5/6", upload_id=upload_id)
    assert_error(reply, 409, "locked")
    assert reply["Retry-After"] == "1"
    assert record(upload_id).offset == 3


def test_anonymous_users_get_403_when_not_allowed(client, chunky):
    chunky.CHUNKY_REDIS_ALLOW_ANONYMOUS = False
    assert_error(post_chunk(client, b"abc"), 403, "not_authenticated")
    assert_error(
        client.post(COMPLETE, {"upload_id": "0" * 32, "md5": "0" * 32}), 403, "not_authenticated"
    )


def test_other_methods_are_405_with_allow(client, chunky):
    for path in (UPLOAD, COMPLETE):
        reply = client.get(path)
        assert_error(reply, 405, "method_not_allowed")
        assert reply["Allow"] == "POST, OPTIONS"
    assert_error(client.get(UPLOAD + "anything/"), 404, "not_found")


@pytest.mark.django_db
def test_session_users_need_the_csrf_token_in_the_form(chunky, signal_log):
    user = User.objects.create_user("ann", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    token = "a" * 32
    client.cookies["csrftoken"] = token
    refused = post_chunk(client, b"abc")
    assert_error(refused, 403, "csrf_failed")
    assert not any(Path(chunky.CHUNKY_REDIS_UPLOAD_DIR).glob("*.part"))
    upload_id = send_file(client, b"abc", fields={"csrfmiddlewaretoken": token})
    assert record(upload_id).owner == str(user.pk)
    md5 = hashlib.md5(b"abc").hexdigest()
    assert_error(client.post(COMPLETE, {"upload_id": upload_id, "md5": md5}), 403, "csrf_failed")
    done = client.post(COMPLETE, {"upload_id": upload_id, "md5": md5, "csrfmiddlewaretoken": token})
    assert done.status_code == 200, done.content
    # Another user's upload does not exist for them.
    other = Client()
    other.force_login(User.objects.create_user("bob", password="pw"))
    reply = post_chunk(other, b"x", upload_id=upload_id, content_range="bytes 3-3/4")
    assert_error(reply, 404, "not_found")


class ProjectView(ChunkedUploadView):
    """A host's subclass, as one written for django-chunked-upload: validate() reads the form."""

    def validate(self, request):
        if request.POST.get("project") != "apollo":
            raise ChunkyError("Say which project.", code="no_project")

    def get_extra_attrs(self, request):
        return {"project": request.POST["project"]}


def test_hooks_see_the_form_fields_sent_before_the_file(chunky, signal_log, rf):
    refused = post_chunk(Client(), b"abc")  # the mounted view has no such rule
    assert refused.status_code == 200
    view = ProjectView.as_view()
    form = {"project": "apollo", "file": SimpleUploadedFile("p.bin", b"abc")}
    request = rf.post(
        UPLOAD,
        encode_multipart(BOUNDARY, form),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )
    request.user = type("Anon", (), {"is_authenticated": False, "pk": None})()
    reply = view(request)
    assert reply.status_code == 200, reply.content
    upload_id = json.loads(reply.content)["upload_id"]
    assert record(upload_id).extra == {"project": "apollo"}
    bad = rf.post(
        UPLOAD,
        encode_multipart(BOUNDARY, {"project": "x", "file": SimpleUploadedFile("p", b"abc")}),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
    )
    bad.user = request.user
    reply = view(bad)
    assert reply.status_code == 400 and json.loads(reply.content)["code"] == "no_project"


def test_a_chunk_after_its_upload_id_streams_without_a_spool(client, chunky, monkeypatch):
    """jQuery-File-Upload sends the form data first: the chunk goes straight to the session."""
    from chunky_redis.protocols import form_chunks

    upload_id = post_chunk(client, b"abc", content_range="bytes 0-2/6").json()["upload_id"]

    def no_spool(*args, **kwargs):
        raise AssertionError("the chunk was spooled")

    monkeypatch.setattr(form_chunks.tempfile, "SpooledTemporaryFile", no_spool)
    reply = post_chunk(client, b"def", content_range="bytes 3-5/6", upload_id=upload_id)
    assert reply.status_code == 200, reply.content
    assert record(upload_id).offset == 6
