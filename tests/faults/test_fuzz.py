"""Thousands of generated requests against the live service (gunicorn, Celery, Redis): every
answer is JSON and none is a 500, and afterwards Redis and the files agree with a model of
every request the server accepted."""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter

import pytest

from tests.faults.conftest import FULL, check, count
from tests.faults.fuzzgen import Fuzzer
from tests.faults.harness import Service, Tally, md5_of
from tests.support.processes import read_signals

pytestmark = pytest.mark.fault
TEST = "tests/faults/test_fuzz.py"


class Runner:
    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.statuses: Counter = Counter()
        self.server_errors: list[str] = []
        self.non_json: list[str] = []
        self.not_http: list[str] = []
        self.dropped: list[str] = []
        self.unsendable = 0

    def send(self, req) -> tuple[int, dict] | None:
        label = f"{req.method} {req.path[:60]} ({req.kind}, {len(req.body)} bytes)"
        try:
            self.conn.request(req.method, req.path, body=req.body, headers=req.headers)
        except (ValueError, UnicodeEncodeError):
            self.unsendable += 1  # http.client refuses to put it on the wire
            self._reconnect()
            return None
        except OSError as e:
            self.dropped.append(f"{label}: {e!r}")
            self._reconnect()
            return None
        try:
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as e:
            self.dropped.append(f"{label}: {e!r}")
            self._reconnect()
            return None
        status = response.status
        self.statuses[status] += 1
        ctype = response.getheader("Content-Type", "")
        sample = (
            f"{req.method} {req.path[:44]} ({req.kind}"
            + "".join(f", {k}: {v[:24]!r}" for k, v in req.headers.items() if k != "Content-Type")
            + f") -> {status} {ctype.split(';')[0]}"
        )
        if status >= 500 and status != 503:
            self.server_errors.append(sample)
        answer: dict = {}
        if status == 204:  # No Content (OPTIONS): nothing to be JSON, and nothing there must be
            if raw:
                self.non_json.append(sample)
        elif not ctype.startswith("application/json"):
            # gunicorn's own page for a request that is not HTTP; the app never sees it
            (self.not_http if req.kind == "not-http" else self.non_json).append(sample)
        elif req.method != "HEAD":
            try:
                parsed = json.loads(raw)
                answer = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                self.non_json.append(sample)
        if response.getheader("Connection", "").lower() == "close":
            self._reconnect()
        return status, answer

    def _reconnect(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)


def get_status(port: int, upload_id: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", f"/upload/{upload_id}/")
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def consistency(svc: Service, fuzzer: Fuzzer) -> tuple[Tally, list[str]]:
    """Compare the model with what the server holds; the tally counts the completed uploads."""
    port = svc.site.port
    tally, mismatches = Tally(), []
    long_names: Counter = Counter()
    processing = [u for u in fuzzer.uploads.values() if u.state == "processing"]
    deadline = time.monotonic() + (60 if FULL else 8)
    statuses: dict[str, dict] = {}
    while time.monotonic() < deadline:
        for u in processing:
            if statuses.get(u.upload_id, {}).get("status") in (None, "processing"):
                statuses[u.upload_id] = get_status(port, u.upload_id)[1]
        if all(s.get("status") != "processing" for s in statuses.values()):
            break
        time.sleep(0.5)
    time.sleep(2)  # the last signals
    completed = Counter(
        s["upload_id"] for s in read_signals(svc.env) if s["signal"] == "upload_completed"
    )
    tally.uploads = len(processing)
    for u in processing:
        seen = statuses.get(u.upload_id, {})
        label = f"upload {u.upload_id} ({len(u.data)} bytes, filename {u.filename[:20]!r})"
        if seen.get("status") != "complete":
            # Which names fail: more than 255 bytes in UTF-8, or not.
            long_names[len(u.filename.encode()) > 255] += 1
        if seen.get("status") == "processing":
            tally.stuck += 1
            tally.problems.append(f"{label} stuck in processing{svc.diagnose(u.upload_id)}")
        elif seen.get("status") != "complete":
            tally.lost += 1
            tally.problems.append(f"{label} {seen.get('status')}: {seen.get('reason', seen)}")
        elif md5_of(svc.media(seen["final_name"])) != u.md5:
            tally.corrupted += 1
            tally.problems.append(f"{label} complete with other bytes")
        else:
            tally.complete += 1
        if seen.get("status") == "complete" and completed[u.upload_id] != 1:
            tally.signal_errors += 1
            tally.problems.append(f"{label}: upload_completed sent {completed[u.upload_id]} times")
    # Uploads still in progress: the record's offset and the file's bytes are the model's.
    for u in fuzzer.uploads.values():
        if u.state != "uploading" or not u.known_bytes:
            continue
        status, seen = get_status(port, u.upload_id)
        part = svc.chunk_dir() / f"{u.upload_id}.part"
        held = part.read_bytes()[: len(u.data)] if part.exists() else None
        if status != 200 or seen.get("status") != "uploading" or seen.get("offset") != len(u.data):
            mismatches.append(f"{u.upload_id}: model offset {len(u.data)}, server {status} {seen}")
        elif held != bytes(u.data):
            mismatches.append(f"{u.upload_id}: the file does not hold the accepted bytes")
    # Nothing the model does not know: every record and every chunk file is accounted for.
    r = svc.redis.client()
    prefix = svc.env["CHUNKY_TEST_KEY_PREFIX"]
    for key in r.scan_iter(match=f"{prefix}:*:upload"):
        upload_id = key.decode().split("{")[1].split("}")[0]
        if upload_id not in fuzzer.uploads:
            mismatches.append(f"record {upload_id} that no accepted request created")
    live = {u.upload_id for u in fuzzer.uploads.values() if u.state == "uploading"}
    live |= {i for i, s in statuses.items() if s.get("status") == "processing"}
    for part in svc.chunk_dir().glob("*.part"):
        if part.name.removesuffix(".part") not in live:
            mismatches.append(f"chunk file {part.name} of no upload in progress")
    tally.answers[("unfinished, name over 255 bytes", "")] = long_names[True]
    tally.answers[("unfinished, other names", "")] = long_names[False]
    return tally, mismatches


@pytest.fixture(scope="module")
def run(tmp_path_factory, fault_rows):
    n = count(400, 10_000)
    fuzzer = Fuzzer(seed=8)
    wrong_accepts: list[str] = []
    with Service(tmp_path_factory.mktemp("fuzz"), lock_timeout=2) as svc:
        runner = Runner(svc.site.port)
        started = time.monotonic()
        for _ in range(n):
            req = fuzzer.next()
            result = runner.send(req)
            if result is not None:
                problem = fuzzer.apply(req, *result)
                if problem:
                    wrong_accepts.append(problem)
        elapsed = time.monotonic() - started
        tally, mismatches = consistency(svc, fuzzer)
    tally.http_500 = len(runner.server_errors)
    tally.non_json = len(runner.non_json)
    mismatches = wrong_accepts + mismatches
    checks = {
        "no answer is a 500": check(
            not runner.server_errors,
            f"{len(runner.server_errors)} answers >= 500 (not 503); first: "
            f"{runner.server_errors[:3]}",
            "issue 8 part 4 (input)",
        ),
        "every answer is JSON": check(
            not runner.non_json,
            f"{len(runner.non_json)} answers not JSON; first: {runner.non_json[:3]}",
            "issue 8 part 4 (input)",
        ),
        "no request is left without an answer": check(
            not runner.dropped, f"{len(runner.dropped)} dropped; first: {runner.dropped[:3]}"
        ),
        "Redis and the files match every accepted request": check(
            not mismatches, f"{len(mismatches)} mismatches; first: {mismatches[:3]}"
        ),
    }
    fault_rows.record(
        "fuzz",
        fault=f"{n} generated requests (seeded) against the live service",
        injected=n,
        tally=tally,
        checks=checks,
        extra={
            "unfinished uploads with a name over 255 bytes / others": (
                f"{tally.answers.pop(('unfinished, name over 255 bytes', ''))} / "
                f"{tally.answers.pop(('unfinished, other names', ''))}"
            ),
            "requests/s": round(n / elapsed),
            "statuses": dict(sorted(runner.statuses.items())),
            "not sendable": runner.unsendable,
            "invalid HTTP answered by gunicorn (not JSON)": len(runner.not_http),
        },
        findings="issue 8 part 3, filenames cut by characters fail the upload (nobyte)",
        test=TEST,
    )
    return runner, tally, mismatches


def test_fuzz_no_500(run):
    runner, *_ = run
    assert not runner.server_errors


def test_fuzz_every_answer_json(run):
    runner, *_ = run
    assert not runner.non_json


def test_fuzz_no_request_dropped(run):
    runner, *_ = run
    assert not runner.dropped


def test_fuzz_records_match_files(run):
    _, _, mismatches = run
    assert not mismatches


def test_fuzz_completed_uploads_complete(run):
    _, tally, _ = run
    assert tally.ok, tally.problems
