"""Whatever a client sends, the answer is JSON and never a 500 (property-based).

Django's test client re-raises an exception that escapes a view instead of
answering 500, so every unhandled error fails these tests with its traceback.
Each test counts which branches its examples reached and fails when one was
never reached: a property that only ever meets refusals proves nothing.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.support.api import ClientApi, multipart

pytestmark = pytest.mark.django_db

# `make mutate` runs these once per mutant, with fewer examples (CHUNKY_TEST_FUZZ_EXAMPLES).
EXAMPLES = int(os.environ.get("CHUNKY_TEST_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

ranges = st.one_of(
    st.none(),
    st.just("fits"),  # the range that exactly fits the body at the upload's offset
    st.builds(
        lambda a, b, c: f"bytes {a}-{b}/{c}",
        st.integers(-5, 300),
        st.integers(-5, 300),
        st.integers(-5, 300),
    ),
    st.text(max_size=40),
)
content_types = st.sampled_from(
    [
        "application/octet-stream",
        "application/json",
        "application/json",  # twice: the JSON dialect has the most parsing to get wrong
        "multipart/form-data; boundary=x",
        "text/plain",
        "",
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.sampled_from(["file", "filename", "md5", "checksum"]), inner)
    ),
    max_leaves=20,
)
json_chunks = st.fixed_dictionaries(
    {"file": st.lists(st.integers(-2, 300), max_size=50)},
    optional={"filename": json_values, "md5": json_values},
)
bodies = st.one_of(
    st.binary(max_size=400),
    json_values.map(lambda v: json.dumps(v).encode()),
    json_chunks.map(lambda v: json.dumps(v).encode()),
)
# Most requests must reach a view's body handling: a real upload's id, a well-formed
# unknown id, or none (create); malformed ids stop at the URL check.
_known = st.sampled_from(["existing", "unknown", None])
targets = st.one_of(
    _known,
    _known,
    _known,
    st.text(alphabet="0123456789abcdefXYZ./%", max_size=40),
)


@FUZZ
@given(
    method=st.sampled_from(["PUT", "PUT", "PUT", "POST", "POST", "GET", "PATCH", "DELETE", "HEAD"]),
    target=targets,
    content_range=ranges,
    content_type=content_types,
    body=bodies,
    disposition=st.one_of(st.none(), st.text(max_size=30)),
)
# Regressions: a body that is not UTF-8 where JSON is expected (a UnicodeDecodeError,
# which is a ValueError: an earlier version of this test swallowed it).
@example(
    method="PUT",
    target=None,
    content_range=None,
    content_type="application/json",
    body=b"\x80",
    disposition=None,
)
@example(
    method="POST",
    target="existing",
    content_range=None,
    content_type="application/json",
    body=b"\x80",
    disposition=None,
)
def test_any_request_gets_a_json_answer_below_500(
    chunky, method, target, content_range, content_type, body, disposition
):
    api = ClientApi()
    offset = 0
    if target == "existing":
        offset = 100  # its total leaves room for exactly this body
        created = api.put("/upload/", b"x" * offset, content_range=f"bytes 0-99/{100 + len(body)}")
        target = created.data["upload_id"]
    elif target == "unknown":
        target = "0" * 32
    path = "/upload/" + (f"{target}/" if target is not None else "")
    if content_range == "fits":
        content_range = f"bytes {offset}-{offset + len(body) - 1}/{offset + len(body)}"
    headers = {}
    if content_range is not None:
        headers["Content-Range"] = content_range
    if disposition is not None:
        headers["Content-Disposition"] = disposition
    # No try/except here: Django's test client takes any header value and body, so an
    # exception is the view's (it would have been a 500), never the client's.
    reply = api.request(method, path, body, content_type, headers)
    event(f"{method} answered {reply.status}")
    assert reply.status < 500, reply.body
    if method != "HEAD" and reply.status >= 400:
        assert reply.is_json, reply.body
        assert set(reply.data) >= {"detail", "code"}


# The existing upload in the test below holds bytes 0-99 of 1000. Start and total
# are drawn mostly at the values that can be accepted, so both branches run often.
EXISTING_OFFSET, EXISTING_TOTAL = 100, 1000
_near = [0, EXISTING_OFFSET - 1, EXISTING_OFFSET + 1, EXISTING_TOTAL - 1]  # off by one
starts = st.one_of(
    st.just(EXISTING_OFFSET), st.just(EXISTING_OFFSET), st.sampled_from(_near), st.integers(0, 2000)
)
totals = st.one_of(st.just(EXISTING_TOTAL), st.just(EXISTING_TOTAL), st.integers(1, 2000))


def test_a_chunk_against_an_existing_upload_never_corrupts_it(chunky):
    """Any chunk sent to an upload either is accepted exactly or changes nothing."""
    outcomes: Counter = Counter()
    data = bytes(range(256)) * 4

    @FUZZ
    @given(start=starts, length=st.integers(0, 600), total=totals, form=st.booleans())
    def check(start, length, total, form):
        api = ClientApi()
        upload_id = api.put(
            "/upload/",
            data[:EXISTING_OFFSET],
            content_range=f"bytes 0-{EXISTING_OFFSET - 1}/{EXISTING_TOTAL}",
        ).data["upload_id"]
        chunk = (data * 3)[start : start + length]
        content_range = f"bytes {start}-{start + length - 1}/{total}"
        if form:
            body, ctype = multipart(chunk)
            reply = api.put(
                f"/upload/{upload_id}/", body, content_range=content_range, content_type=ctype
            )
        else:
            reply = api.put(f"/upload/{upload_id}/", chunk, content_range=content_range)
        assert reply.status in (200, 400), reply.body
        offset = api.get(f"/upload/{upload_id}/").data["offset"]
        stored = (Path(chunky.CHUNKY_REDIS_UPLOAD_DIR) / f"{upload_id}.part").read_bytes()
        if reply.status == 200:
            assert (start, total, len(chunk)) == (EXISTING_OFFSET, EXISTING_TOTAL, length)
            assert offset == EXISTING_OFFSET + length
            assert stored[:offset] == data[:EXISTING_OFFSET] + chunk
        else:
            assert offset == EXISTING_OFFSET
            assert stored[:EXISTING_OFFSET] == data[:EXISTING_OFFSET]
        branch = "accepted" if reply.status == 200 else "refused"
        event(branch)
        outcomes[branch] += 1
        if reply.status == 400:
            outcomes[reply.data["code"]] += 1

    check()
    # Both branches ran many times, and the refusals include the one for a wrong start.
    assert outcomes["accepted"] >= EXAMPLES // 10, outcomes
    assert outcomes["refused"] >= EXAMPLES // 10, outcomes
    assert outcomes["offset_mismatch"] >= EXAMPLES // 30, outcomes
