"""One test per server MUST of draft-ietf-httpbis-resumable-upload at interop version 8
(draft -09, whose section numbers are cited), and the differences of interop versions 3 to 7
that shipping clients rely on (cited by the draft revision that carried them).

The requests go over a real socket with h11, so the exact header fields and every interim
response are visible, to an in-process WSGI server (Django's threaded server, no process
started) running the test settings on fakeredis and on the real Redis.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import h11
import pytest
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.core.wsgi import get_wsgi_application

from chunky_redis import runtime
from tests.support.processes import free_port

URL = "/resumable/"


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    # A port from CHUNKY_TEST_PORTS when set (tests/support/processes.py).
    httpd = ThreadedWSGIServer(("127.0.0.1", free_port()), QuietHandler)
    httpd.set_app(get_wsgi_application())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    interim: list[int] = field(default_factory=list)

    def json(self) -> dict:
        return json.loads(self.body)


def _read(sock: socket.socket, conn: h11.Connection, reply: Reply) -> Reply:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(sock.recv(65536))
        elif isinstance(event, h11.InformationalResponse):
            reply.interim.append(event.status_code)
        elif isinstance(event, h11.Response):
            reply.status = event.status_code
            reply.headers = {k.decode().lower(): v.decode() for k, v in event.headers}
        elif isinstance(event, h11.Data):
            reply.body += event.data
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return reply


def send(
    port: int,
    method: str,
    target: str,
    fields: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    version: int | None = 8,
    sent_bytes: int | None = None,
    expect_continue: bool = False,
) -> Reply:
    """One request on its own connection. ``sent_bytes``: send only that much of ``body``,
    then close the connection (an interrupted upload); the reply is then None."""
    headers = [("Host", f"127.0.0.1:{port}")]
    if version is not None:
        headers.append(("Upload-Draft-Interop-Version", str(version)))
    headers += list((fields or {}).items())
    if body or method in ("POST", "PUT", "PATCH"):
        headers.append(("Content-Length", str(len(body))))
    if expect_continue:
        headers.append(("Expect", "100-continue"))
    conn = h11.Connection(h11.CLIENT)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(conn.send(h11.Request(method=method, target=target, headers=headers)))
        reply = Reply(0, {}, b"")
        if expect_continue:
            while not reply.interim and reply.status == 0:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(sock.recv(65536))
                elif isinstance(event, h11.InformationalResponse):
                    reply.interim.append(event.status_code)
        if sent_bytes is not None:
            sock.sendall(body[:sent_bytes])
            sock.shutdown(socket.SHUT_RDWR)
            return reply
        if body:
            sock.sendall(conn.send(h11.Data(data=body)))
        sock.sendall(conn.send(h11.EndOfMessage()))
        return _read(sock, conn, reply)


def location_path(reply: Reply) -> str:
    return urlsplit(reply.headers["location"]).path


def new_upload(port: int, data: bytes = b"", length: int | None = None, version: int = 8) -> str:
    fields = {"Upload-Complete": "?0"} if version > 3 else {"Upload-Incomplete": "?1"}
    if length is not None:
        fields["Upload-Length"] = str(length)
    reply = send(port, "POST", URL, fields, data, version=version)
    assert reply.status == 201, reply
    return location_path(reply)


def patch(port: int, path: str, data: bytes, offset: int, complete: bool, **kw: object) -> Reply:
    fields = {
        "Upload-Offset": str(offset),
        "Upload-Complete": "?1" if complete else "?0",
        "Content-Type": "application/partial-upload",
    }
    return send(port, "PATCH", path, fields, data, **kw)  # type: ignore[arg-type]


def head_until(port: int, path: str, offset: str) -> Reply:
    """HEAD until the offset is ``offset``: an interrupted request is handled after the client
    has gone (each answer is checked by the caller: it never says complete)."""
    for _ in range(200):
        reply = send(port, "HEAD", path)
        assert reply.headers["upload-complete"] == "?0"
        if reply.headers["upload-offset"] == offset:
            return reply
        time.sleep(0.05)
    raise AssertionError(f"the offset never became {offset}: {reply.headers}")


@pytest.fixture
def port(chunky, server) -> int:
    return server


# -- 4.1.1 Offset ---------------------------------------------------------------------------


def test_4_1_1_the_offset_never_decreases(port):
    """4.1.1: the offset MUST NOT decrease (a refused or interrupted append leaves it)."""
    path = new_upload(port, b"abcd", length=10)
    seen = [int(send(port, "HEAD", path).headers["upload-offset"])]
    assert patch(port, path, b"xy", 1, False).status == 409
    seen.append(int(send(port, "HEAD", path).headers["upload-offset"]))
    patch(port, path, b"efgh", 4, False, sent_bytes=2)
    seen.append(int(head_until(port, path, "6").headers["upload-offset"]))
    assert seen[-1] == 6  # the interrupted append's prefix was kept (4.4.2 SHOULD)
    assert patch(port, path, b"gh", 6, False).status == 204
    seen.append(int(send(port, "HEAD", path).headers["upload-offset"]))
    assert seen == sorted(seen) and seen[-1] == 8


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", "1;x", ""])
def test_4_1_1_an_upload_offset_that_is_no_integer_is_ignored(port, value):
    """4.1.1: other values MUST cause the entire header field to be ignored: no offset then."""
    path = new_upload(port, b"ab", length=4)
    reply = send(
        port,
        "PATCH",
        path,
        {
            "Upload-Offset": value,
            "Upload-Complete": "?0",
            "Content-Type": "application/partial-upload",
        },
        b"cd",
    )
    assert reply.status == 400 and reply.json()["code"] == "missing_upload_offset"


# -- 4.1.2 Completeness ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["?2", "true", "1", ""])
def test_4_1_2_an_upload_complete_that_is_no_boolean_is_ignored(port, value):
    """4.1.2: a value other than a Boolean MUST cause the field to be ignored: no creation."""
    reply = send(port, "POST", URL, {"Upload-Complete": value}, b"abc")
    assert reply.status == 400 and reply.json()["code"] == "missing_upload_complete"


# -- 4.1.3 Length ----------------------------------------------------------------------------


def test_4_1_3_an_upload_length_that_is_no_integer_is_ignored(port):
    """4.1.3: other values MUST cause the entire Upload-Length field to be ignored."""
    path = new_upload(port, b"", length=None)
    send(
        port, "PATCH", path, {"Upload-Offset": "0", "Upload-Complete": "?0", "Upload-Length": "-4"}
    )
    assert "upload-length" not in send(port, "HEAD", path).headers


def test_4_1_3_two_length_indications_must_match(port):
    """4.1.3: Upload-Length and Upload-Complete ?1 + Content-Length MUST match."""
    reply = send(port, "POST", URL, {"Upload-Complete": "?1", "Upload-Length": "5"}, b"abc")
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["type"] == (
        "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
    )


def test_4_1_3_later_requests_must_state_the_same_length(port):
    """4.1.3: if multiple requests include indicators, their values MUST match."""
    path = new_upload(port, b"ab", length=6)
    reply = send(
        port,
        "PATCH",
        path,
        {
            "Upload-Offset": "2",
            "Upload-Complete": "?0",
            "Upload-Length": "7",
            "Content-Type": "application/partial-upload",
        },
        b"cd",
    )
    assert reply.status == 400 and reply.json()["type"].endswith("#inconsistent-upload-length")
    assert send(port, "HEAD", path).headers["upload-offset"] == "2"


# -- 4.1.4 Limits ----------------------------------------------------------------------------


def test_4_1_4_options_must_include_upload_limit_with_min_size_0_without_limits(port):
    """4.1.4: OPTIONS MUST include Upload-Limit; with no limit, min-size=0 (not empty)."""
    reply = send(port, "OPTIONS", URL)
    assert reply.status == 204 and reply.headers["upload-limit"] == "min-size=0"


def test_4_1_4_options_announces_the_max_size(port, chunky):
    chunky.CHUNKY_REDIS_MAX_BYTES = 1000
    assert send(port, "OPTIONS", URL).headers["upload-limit"] == "max-size=1000"


# -- 4.2.2 Upload Creation -------------------------------------------------------------------


def test_4_2_2_an_incomplete_creation_must_give_location_and_upload_limit(port):
    """4.2.2: Upload-Complete ?0 fully received: Location MUST be there, and Upload-Limit."""
    reply = send(port, "POST", URL, {"Upload-Complete": "?0", "Upload-Length": "9"}, b"abc")
    assert reply.status == 201
    assert reply.headers["location"].startswith(f"http://127.0.0.1:{port}/resumable/")
    assert "max-age=" in reply.headers["upload-limit"]
    assert reply.headers["upload-complete"] == "?0"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_4_2_1_any_method_with_content_creates(port, method):
    """4.2.1: all methods that allow content can create an upload."""
    reply = send(port, method, URL, {"Upload-Complete": "?0"}, b"")
    assert reply.status == 201 and "location" in reply.headers


def test_4_2_2_the_length_must_be_recorded(port):
    """4.2.2: the server MUST record the length (Upload-Length, or Upload-Complete ?1)."""
    path = new_upload(port, b"abc", length=12)
    assert send(port, "HEAD", path).headers["upload-length"] == "12"


def test_4_2_2_an_interrupted_creation_is_not_complete(port):
    """4.2.2: content not fully received: the upload MUST NOT be considered complete (what came
    is kept, the SHOULD). The client got no URL (no 104 under WSGI): the test finds the record."""
    reply = send(port, "POST", URL, {"Upload-Complete": "?1"}, b"x" * 5000, sent_bytes=100)
    assert reply.status == 0  # no answer reached the client
    store = runtime.get_store()

    def the_upload() -> dict[bytes, bytes] | None:
        for key in store.redis.scan_iter(match=f"{store.prefix}:*:upload"):
            record = store.redis.hgetall(key)
            if record.get(b"size") == b"5000" and record.get(b"offset") == b"100":
                return record
        return None

    for _ in range(200):
        record = the_upload()
        if record:
            break
        time.sleep(0.05)
    assert record is not None, "the interrupted creation's 100 bytes were not recorded"
    assert record[b"status"] == b"uploading"


def test_4_2_2_no_104_and_100_continue_is_still_sent(port):
    """Section 5: the server MUST NOT omit 100 (Continue) because of 104 (it sends no 104)."""
    reply = send(port, "POST", URL, {"Upload-Complete": "?1"}, b"abc", expect_continue=True)
    assert reply.interim == [100]
    assert reply.status == 200


# -- 4.3.2 Offset Retrieval ------------------------------------------------------------------


def test_4_3_2_head_must_give_offset_completeness_length_and_limits(port):
    """4.3.2: Upload-Offset, Upload-Complete, Upload-Length (known), Upload-Limit MUST be there."""
    path = new_upload(port, b"hello", length=11)
    reply = send(port, "HEAD", path)
    assert reply.status == 204
    h = reply.headers
    assert (h["upload-offset"], h["upload-complete"], h["upload-length"]) == ("5", "?0", "11")
    assert h["upload-limit"].startswith("max-age=")
    assert h["cache-control"] == "no-store"  # SHOULD


def test_4_3_2_head_after_completion_says_complete(port):
    path = new_upload(port, b"hello", length=5)
    assert patch(port, path, b"", 5, True).status == 200
    reply = send(port, "HEAD", path)
    assert reply.headers["upload-complete"] == "?1" and reply.headers["upload-offset"] == "5"


# -- 4.4.2 Upload Append ---------------------------------------------------------------------


def test_4_4_2_a_mismatching_offset_must_be_409_with_the_correct_offset(port):
    """4.4.2: 409, the correct Upload-Offset, Upload-Complete ?0; problem type (7.1)."""
    path = new_upload(port, b"hello", length=11)
    reply = patch(port, path, b" world", 6, True)
    assert reply.status == 409
    assert reply.headers["upload-offset"] == "5" and reply.headers["upload-complete"] == "?0"
    problem = reply.json()
    assert problem["type"] == (
        "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
    )
    assert (problem["expected-offset"], problem["provided-offset"]) == (5, 6)


def test_4_4_2_a_completed_upload_must_not_be_modified(port):
    """4.4.2: appending to a completed upload MUST be rejected, the upload unchanged (7.2)."""
    path = new_upload(port, b"abc", length=3)
    assert patch(port, path, b"", 3, True).status == 200
    reply = patch(port, path, b"more", 3, False)
    assert reply.status == 400 and reply.json()["type"].endswith("#completed-upload")
    assert send(port, "HEAD", path).headers["upload-offset"] == "3"


def test_4_4_2_the_completing_response_must_say_upload_complete_true(port):
    """4.4.2: the response to Upload-Complete ?1 fully received MUST carry Upload-Complete ?1."""
    path = new_upload(port, b"abc", length=6)
    reply = patch(port, path, b"def", 3, True)
    assert reply.status == 200 and reply.headers["upload-complete"] == "?1"
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["size"] == 6


def test_4_4_2_a_response_that_does_not_complete_must_say_upload_complete_false(port):
    """4.4.2: any response of a request that did not complete, success or not, says ?0."""
    path = new_upload(port, b"abc", length=9)
    ok, refused = patch(port, path, b"def", 3, False), patch(port, path, b"xyz", 0, True)
    assert (ok.status, refused.status) == (204, 409)
    assert ok.headers["upload-complete"] == refused.headers["upload-complete"] == "?0"


def test_4_4_2_the_offset_must_not_pass_the_length(port):
    """4.4.2: with the length known, the offset MUST NOT exceed it: the request is rejected."""
    path = new_upload(port, b"abc", length=5)
    reply = patch(port, path, b"defgh", 3, False)
    assert reply.status == 400
    assert send(port, "HEAD", path).headers["upload-offset"] == "3"


def test_4_4_2_an_interrupted_append_is_not_complete(port):
    """4.4.2: content not fully received: MUST NOT be complete; what came is appended
    (SHOULD, "as much of the patch document as possible")."""
    path = new_upload(port, b"abc", length=2003)
    patch(port, path, b"z" * 2000, 3, True, sent_bytes=500)
    head_until(port, path, "503")  # never complete on the way


# -- 4.5.2 Upload Cancellation ---------------------------------------------------------------


def test_4_5_2_delete_deactivates_the_upload(port):
    path = new_upload(port, b"abc", length=10)
    assert send(port, "DELETE", path).status == 204
    assert send(port, "HEAD", path).status == 404
    assert patch(port, path, b"def", 3, False).status == 404


# -- 4.6 Concurrency -------------------------------------------------------------------------


def test_4_6_concurrent_appends_never_corrupt(port, chunky):
    """4.6: the server MUST prevent races, loss and corruption from concurrent appends."""
    data = bytes(range(256)) * 256
    path = new_upload(port, b"", length=2 * len(data))
    replies: list[Reply] = []

    def go() -> None:
        replies.append(patch(port, path, data, 0, False))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status for r in replies)
    assert statuses.count(204) == 1 and set(statuses) <= {204, 409, 423}
    assert send(port, "HEAD", path).headers["upload-offset"] == str(len(data))
    done = patch(port, path, data, len(data), True)
    assert done.status == 200
    upload = runtime.get_store().get(done.json()["upload_id"])
    assert upload is not None
    assert (Path(chunky.MEDIA_ROOT) / upload.final_name).read_bytes() == data + data


def test_4_6_the_offset_retrieved_must_be_accepted(port):
    """4.6: the offset a HEAD sends MUST be accepted by the next append."""
    path = new_upload(port, b"abcde", length=10)
    offset = int(send(port, "HEAD", path).headers["upload-offset"])
    assert patch(port, path, b"fghij"[: 10 - offset], offset, True).status == 200


# -- Section 6 and appendix ------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, 2, 3, 6, 8, 9])
def test_appendix_no_104_whatever_the_interop_version(port, version):
    """Appendix (draft version identification): MUST NOT send 104 when the interop version is
    missing or mismatching. WSGI cannot send one at all: none, for any version."""
    reply = send(port, "POST", URL, {"Upload-Complete": "?0"}, b"ab", version=version)
    assert 104 not in reply.interim
    assert reply.status in (200, 201, 400)


# -- Differences of interop versions 3 to 7 that clients rely on -----------------------------


def test_interop_3_upload_incomplete_replaces_upload_complete(port):
    """-00/-01 (interop 3), Upload Creation: Upload-Incomplete ?1 while more is to come, and
    the 201 MUST carry Upload-Incomplete ?1; its absence on an append means the end."""
    path = new_upload(port, b"abc", length=6, version=3)
    reply = send(port, "HEAD", path, version=3)
    assert reply.headers["upload-incomplete"] == "?1" and "upload-complete" not in reply.headers
    done = send(port, "PATCH", path, {"Upload-Offset": "3"}, b"def", version=3)
    assert done.status == 200 and done.headers["upload-incomplete"] == "?0"


@pytest.mark.parametrize("version", [3, 4, 5, 6])
def test_interop_3_to_6_head_and_delete_with_upload_offset_must_be_400(port, version):
    """-00 to -05, Offset Retrieval and Upload Cancellation: a request with Upload-Offset or
    Upload-Complete MUST be rejected with 400."""
    path = new_upload(port, b"abc", length=6, version=version)
    assert send(port, "HEAD", path, {"Upload-Offset": "3"}, version=version).status == 400
    assert send(port, "DELETE", path, {"Upload-Offset": "3"}, version=version).status == 400
    assert send(port, "HEAD", path, version=version).status == 204


@pytest.mark.parametrize("version, status", [(4, 201), (5, 201), (6, 201), (7, 204), (8, 204)])
def test_interop_versions_answer_an_incomplete_append_as_they_require(port, version, status):
    """-02 to -05 (interop 4-6): an incomplete append MUST answer 201 with Upload-Offset;
    -06 on (interop 7-8): a 2xx (204 here)."""
    path = new_upload(port, b"abc", length=9, version=version)
    reply = patch(port, path, b"def", 3, False, version=version)
    assert reply.status == status and reply.headers["upload-offset"] == "6"


@pytest.mark.parametrize("version", [3, 4, 5, 6])
def test_interop_3_to_6_an_inactive_upload_must_be_404(port, version):
    """-00 to -05: an upload the server does not consider active MUST answer 404."""
    path = URL + "0" * 32 + "/"
    assert send(port, "HEAD", path, version=version).status == 404


def test_interop_6_calls_the_lifetime_expires_and_7_on_max_age(port):
    """-04/-05 (interop 6) name the limit `expires`; -06 on `max-age`."""
    path = new_upload(port, b"abc", length=9, version=6)
    assert "expires=" in send(port, "HEAD", path, version=6).headers["upload-limit"]
    assert "max-age=" in send(port, "HEAD", path, version=7).headers["upload-limit"]


@pytest.mark.parametrize("version, status", [(5, 201), (6, 415)])
def test_interop_6_requires_partial_upload_on_append(port, version, status):
    """-04 on (interop 6+): an append uses application/partial-upload; -03 and before do not."""
    path = new_upload(port, b"abc", length=9, version=version)
    fields = {"Upload-Offset": "3", "Upload-Complete": "?0", "Content-Type": "text/plain"}
    assert send(port, "PATCH", path, fields, b"def", version=version).status == status
