"""Client mistakes get a JSON 4xx and change nothing; a bug gets a logged JSON 500.

Also: every path below upload/ answers JSON, 405 answers list what is allowed,
and HEAD works wherever GET does.
"""

from __future__ import annotations

import json
import logging
import os

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chunky_redis.core.uploads import UploadService
from tests.support.api import BOUNDARY, MULTIPART, ClientApi, multipart

pytestmark = pytest.mark.django_db

DEEP = 100_000  # far past the interpreter's recursion limit


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def assert_json_error(reply, status: int, code: str | None = None) -> None:
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.is_json, reply.body[:300]
    assert {"detail", "code"} <= set(reply.data)
    if code:
        assert reply.data["code"] == code, reply.data


def chunk_files(chunky) -> list[str]:
    directory = chunky.CHUNKY_REDIS_UPLOAD_DIR
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def new_upload(api, data: bytes = b"0123456789") -> str:
    reply = api.put("/upload/", data, content_range=f"bytes 0-{len(data) - 1}/{len(data) * 2}")
    assert reply.status == 200, reply.body
    return reply.data["upload_id"]


def raw_multipart(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart body from (field name, filename or None for a plain field, content)."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


# -- deeply nested JSON ----------------------------------------------------------------------
def test_a_deeply_nested_json_chunk_is_a_400(chunky):
    api = ClientApi()
    reply = api.put("/upload/", nested(DEEP), content_type="application/json")
    assert_json_error(reply, 400, "bad_body")
    assert "nested too deeply" in reply.data["detail"]
    body = b'{"file": ' + nested(DEEP) + b"}"
    assert_json_error(api.put("/upload/", body, content_type="application/json"), 400, "bad_body")
    assert chunk_files(chunky) == []


def test_a_deeply_nested_json_completion_is_a_400_and_changes_nothing(chunky):
    api = ClientApi()
    upload_id = new_upload(api)
    reply = api.request("POST", f"/upload/{upload_id}/", nested(DEEP), "application/json")
    assert_json_error(reply, 400, "bad_body")
    status = api.get(f"/upload/{upload_id}/").data
    assert (status["status"], status["offset"]) == ("uploading", 10)


# -- multipart bodies that Django's cleanup used to trip over --------------------------------
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_two_file_parts_are_a_400(chunky, method):
    api = ClientApi()
    body = raw_multipart([("file", "a.bin", b"a" * 10), ("file", "b.bin", b"b" * 10)])
    reply = api.request(method, "/upload/", body, MULTIPART)
    assert_json_error(reply, 400, "bad_body")
    assert "more than one file" in reply.data["detail"]
    assert chunk_files(chunky) == [], "a refused new upload leaves no file"


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_a_file_part_then_too_many_fields_is_a_400(chunky, method):
    api = ClientApi()
    fields = [(f"f{i}", None, b"v") for i in range(1500)]  # DATA_UPLOAD_MAX_NUMBER_FIELDS is 1000
    body = raw_multipart([("file", "a.bin", b"a" * 10), *fields])
    reply = api.request(method, "/upload/", body, MULTIPART)
    assert_json_error(reply, 400, "bad_body")
    assert chunk_files(chunky) == []


def test_too_many_fields_against_an_existing_upload_change_nothing(chunky):
    api = ClientApi()
    upload_id = new_upload(api)
    fields = [(f"f{i}", None, b"v") for i in range(1500)]
    body = raw_multipart([("file", "a.bin", b"a" * 10), *fields])
    reply = api.put(
        f"/upload/{upload_id}/", body, content_range="bytes 10-19/20", content_type=MULTIPART
    )
    assert_json_error(reply, 400, "bad_body")
    assert api.get(f"/upload/{upload_id}/").data["offset"] == 10


def test_a_whole_multipart_upload_still_works(chunky):
    """The stand-in file object Django closes at the end of the request closes quietly."""
    import hashlib

    api = ClientApi()
    data = b"x" * 1000
    body, ctype = multipart(data, fields={"md5": hashlib.md5(data).hexdigest()})
    reply = api.request("POST", "/upload/", body, ctype)
    assert reply.status == 200, reply.body
    assert reply.data["size"] == 1000


# -- what hypothesis finds ---------------------------------------------------------------------
part = st.tuples(
    st.sampled_from(["file", "filename", "md5", "checksum", "other"]),
    st.one_of(st.none(), st.text(alphabet="abc.html\u00e9 ", max_size=8)),
    st.binary(max_size=64),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["PUT", "POST"]),
    existing=st.booleans(),
    parts=st.lists(part, max_size=5),
    extra_fields=st.sampled_from([0, 5, 1001]),
    tail=st.sampled_from([b"", b"garbage", b"\r\n--" + BOUNDARY.encode()]),
    content_range=st.one_of(st.none(), st.just("bytes 10-19/20"), st.just("bytes 0-9/10")),
)
def test_any_multipart_body_gets_a_json_answer_below_500(
    chunky, method, existing, parts, extra_fields, tail, content_range
):
    api = ClientApi()
    path = f"/upload/{new_upload(api)}/" if existing else "/upload/"
    fields = [(f"f{i}", None, b"v") for i in range(extra_fields)]
    body = raw_multipart(parts + fields)
    if tail:  # cut off the closing boundary: a truncated or garbled body
        body = body[: -len(f"--{BOUNDARY}--\r\n")] + tail
    headers = {"Content-Range": content_range} if content_range else {}
    reply = api.request(method, path, body, MULTIPART, headers)
    assert reply.status < 500, reply.body[:300]
    assert reply.is_json, reply.body[:300]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    method=st.sampled_from(["PUT", "POST"]),
    existing=st.booleans(),
    depth=st.integers(1, 50_000),
    wrap=st.sampled_from(["bare", "file", "md5"]),
)
def test_any_json_nesting_gets_a_json_answer_below_500(chunky, method, existing, depth, wrap):
    api = ClientApi()
    path = f"/upload/{new_upload(api)}/" if existing else "/upload/"
    body = nested(depth) if wrap == "bare" else b'{"%s": ' % wrap.encode() + nested(depth) + b"}"
    reply = api.request(method, path, body, "application/json")
    assert reply.status < 500, reply.body[:300]
    assert reply.is_json


# -- the 500s that remain ----------------------------------------------------------------------
def test_a_bug_is_a_logged_json_500(chunky, monkeypatch, caplog):
    def broken(self, **kwargs):
        raise RuntimeError("a bug in the service")

    monkeypatch.setattr(UploadService, "status", broken)
    api = ClientApi(Client(raise_request_exception=False))
    with caplog.at_level(logging.ERROR, logger="chunky_redis"):
        reply = api.get("/upload/" + "0" * 32 + "/")
    assert_json_error(reply, 500, "server_error")
    assert "a bug" not in reply.data["detail"], "the client learns nothing about the server"
    (record,) = [r for r in caplog.records if r.name == "chunky_redis"]
    assert record.exc_info and record.exc_info[0] is RuntimeError, "logged with its traceback"


def test_a_host_outside_allowed_hosts_is_a_json_400(chunky):
    chunky.ALLOWED_HOSTS = ["good.example"]
    reply = ClientApi().put("/upload/", b"abc", headers={"Host": "evil.example"})
    assert_json_error(reply, 400, "suspicious_request")
    assert chunk_files(chunky) == []


# -- every path answers JSON -----------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "PUT", "POST", "PATCH", "DELETE"])
@pytest.mark.parametrize("path", ["/upload/a/b", "/upload/a/b/", "/upload", "/upload/x/y/z/"])
def test_every_path_below_upload_answers_json(chunky, method, path):
    # The CSRF middleware runs as it does in production (the test client skips it by default).
    api = ClientApi(Client(enforce_csrf_checks=True))
    reply = api.request(method, path, b"{}", "application/json")
    assert_json_error(reply, 404, "not_found")


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("DELETE", "/upload/{id}/", {"GET", "HEAD", "PUT", "POST", "OPTIONS"}),
        ("PATCH", "/upload/{id}/", {"GET", "HEAD", "PUT", "POST", "OPTIONS"}),
        ("DELETE", "/upload/", {"PUT", "POST", "OPTIONS"}),
        ("GET", "/upload/", {"PUT", "POST", "OPTIONS"}),
        ("HEAD", "/upload/", {"PUT", "POST", "OPTIONS"}),
    ],
)
def test_405_lists_the_allowed_methods(chunky, method, path, allowed):
    api = ClientApi()
    reply = api.request(method, path.format(id="0" * 32), b"", "")
    assert reply.status == 405
    assert {m.strip() for m in reply.headers["allow"].split(",")} == allowed
    if method != "HEAD":
        assert_json_error(reply, 405, "method_not_allowed")
    options = api.request("OPTIONS", path.format(id="0" * 32))
    assert options.status in (200, 204)
    assert {m.strip() for m in options.headers["allow"].split(",")} == allowed


def test_head_works_on_a_status_url(chunky):
    api = ClientApi()
    upload_id = new_upload(api)
    get = api.get(f"/upload/{upload_id}/")
    head = api.request("HEAD", f"/upload/{upload_id}/")
    assert head.status == 200 and head.body == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["cache-control"] == "no-store"
    assert int(head.headers["content-length"]) == len(get.body)
    missing = api.request("HEAD", "/upload/" + "f" * 32 + "/")
    assert missing.status == 404


def test_json_bodies_of_refusals_are_parseable(chunky):
    reply = ClientApi().put("/upload/", b"", content_type="application/json")
    assert reply.status == 400
    assert json.loads(reply.body)["code"]
