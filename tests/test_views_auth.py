"""Authentication, ownership, CSRF and the view's extension hooks (Django test client)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.support.api import ClientApi, multipart

pytestmark = pytest.mark.django_db

RANGE = "bytes 0-9/20"


def put_first(api, path="/upload/", data=b"0123456789"):
    return api.put(path, data, content_range=RANGE)


@pytest.fixture
def users():
    return User.objects.create_user("alice", password="pw"), User.objects.create_user(
        "bob", password="pw"
    )


def logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def test_anonymous_is_refused_everywhere_unless_allowed(chunky):
    chunky.CHUNKY_REDIS_ALLOW_ANONYMOUS = False
    api = ClientApi()
    some_id = "a" * 32
    for reply in (
        put_first(api),
        api.put(f"/upload/{some_id}/", b"x", content_range="bytes 10-10/20"),
        api.post_json(f"/upload/{some_id}/", {"md5": "0" * 32}),
        api.get(f"/upload/{some_id}/"),
        api.request("POST", "/upload/", b"abc", "application/octet-stream"),
    ):
        assert reply.status == 403, reply.body
        assert reply.data["code"] == "not_authenticated"
    assert not list(Path(chunky.CHUNKY_REDIS_UPLOAD_DIR).glob("*"))


def test_an_upload_belongs_to_its_user(chunky, users):
    alice, bob = users
    chunky.CHUNKY_REDIS_ALLOW_ANONYMOUS = False
    api_a, api_b = ClientApi(logged_in(alice)), ClientApi(logged_in(bob))
    data = bytes(range(20))
    upload_id = put_first(api_a, data=data[:10]).data["upload_id"]
    md5 = hashlib.md5(data).hexdigest()
    for reply in (
        api_b.get(f"/upload/{upload_id}/"),
        api_b.put(f"/upload/{upload_id}/", data[10:], content_range="bytes 10-19/20"),
        api_b.post_json(f"/upload/{upload_id}/", {"md5": md5}),
    ):
        assert reply.status == 404 and reply.data["code"] == "not_found"
    chunky.CHUNKY_REDIS_ALLOW_ANONYMOUS = True
    assert ClientApi().get(f"/upload/{upload_id}/").status == 404
    assert (
        api_a.put(f"/upload/{upload_id}/", data[10:], content_range="bytes 10-19/20").data["offset"]
        == 20
    )
    # bob's completion attempt changed nothing; alice's works
    assert api_a.post_json(f"/upload/{upload_id}/", {"md5": md5}).status == 200
    assert api_a.get(f"/upload/{upload_id}/").data["status"] == "complete"


def test_csrf_applies_to_session_authenticated_browsers(chunky, users):
    alice, _ = users
    client = logged_in(alice, enforce_csrf_checks=True)
    api = ClientApi(client)
    reply = put_first(api)
    assert reply.status == 403 and reply.data["code"] == "csrf_failed"
    token = "k" * 32
    client.cookies["csrftoken"] = token
    reply = api.put("/upload/", b"0123456789", content_range=RANGE, headers={"X-CSRFToken": token})
    assert reply.status == 200, reply.body
    # the one-shot POST carrying the token as a form field, parsed while streaming the file
    data = b"whole file" * 100
    body, ctype = multipart(
        data, fields={"md5": hashlib.md5(data).hexdigest(), "csrfmiddlewaretoken": token}
    )
    reply = api.request("POST", "/upload/", body, ctype)
    assert reply.status == 200, reply.body
    body, ctype = multipart(
        data, fields={"md5": hashlib.md5(data).hexdigest(), "csrfmiddlewaretoken": "w" * 32}
    )
    assert api.request("POST", "/upload/", body, ctype).status == 403


def test_anonymous_clients_need_no_csrf_token(chunky):
    api = ClientApi(Client(enforce_csrf_checks=True))
    assert put_first(api).status == 200


def test_hooks(chunky, users, signal_log):
    alice, _ = users
    api = ClientApi(logged_in(alice))
    rejected = api.put("/hooked/upload/?reject=1", b"0123456789", content_range=RANGE)
    assert rejected.status == 400 and rejected.data["code"] == "rejected"
    denied = api.put("/hooked/upload/", b"0123456789", content_range=RANGE, headers={"X-Deny": "1"})
    assert denied.status == 403 and denied.data["code"] == "permission_denied"
    too_big = api.put("/hooked/upload/", b"0123456789", content_range="bytes 0-9/101")
    assert too_big.status == 400 and too_big.data["code"] == "too_large"
    no_header = api.put("/hooked/upload/", b"0123456789")
    assert no_header.status == 400 and no_header.data["code"] == "bad_content_range"
    assert not list(Path(chunky.CHUNKY_REDIS_UPLOAD_DIR).glob("*"))

    data = bytes(range(20))
    upload_id = api.put("/hooked/upload/?project=apollo", data[:10], content_range=RANGE).data[
        "upload_id"
    ]
    api.put(f"/hooked/upload/{upload_id}/", data[10:], content_range="bytes 10-19/20")
    done = api.post_json(f"/hooked/upload/{upload_id}/", {"md5": hashlib.md5(data).hexdigest()})
    assert done.status == 200
    assert done.data == {"custom": True, "id": upload_id, "project": "apollo"}
    [(name, completed)] = [(n, k) for n, k in signal_log if n == "upload_completed"]
    assert completed["extra"] == {"project": "apollo"}
    assert completed["user_id"] == str(alice.pk)
