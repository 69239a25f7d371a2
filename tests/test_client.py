"""The upload client (python -m chunky_redis, chunky_redis.client) against real processes.

A gunicorn site and a Celery worker on the real Redis, started once for the
module; the client runs as a subprocess wherever killing it, timing it or
measuring its memory matters. The site's access log records every request's
method, path, status and Content-Range, which is how the tests see what the
client actually sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from chunky_redis.client import ClientError, status, upload
from chunky_redis.client.state import default_path, entry_key
from tests.support.processes import REPO, SiteProcess, WorkerProcess, free_port, live_env, wait_for

pytestmark = pytest.mark.live

MiB = 1 << 20
ACCESS_FORMAT = "%(m)s %(U)s %(s)s [%({content-range}i)s] [%({authorization}i)s]"
LOG_LINE = re.compile(r"^(\w+) (\S+) (\d{3}) \[(?:bytes (\d+)-(\d+)/(\d+)|-)?\] \[(.*)\]$")


def access_env(env: dict, log: Path) -> dict:
    return {
        **env,
        "GUNICORN_ACCESSLOG": str(log),
        "GUNICORN_CMD_ARGS": f"--access-logformat '{ACCESS_FORMAT}'",
    }


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("client-live")
    env = access_env(live_env(tmp), tmp / "access.log")
    with SiteProcess(env, workers=2, threads=4) as site, WorkerProcess(env):
        site.access_log = tmp / "access.log"
        site.endpoint = site.url + "/upload/"
        yield site


def requests_logged(site) -> list[tuple[str, str, int, int | None, str]]:
    """(method, path, status, Content-Range start, Authorization) of each request logged so far."""
    rows = []
    for line in site.access_log.read_text().splitlines():
        match = LOG_LINE.match(line.strip())
        if match:
            method, path, code, start, auth = match.group(1, 2, 3, 4, 7)
            rows.append((method, path, int(code), int(start) if start is not None else None, auth))
    return rows


def log_mark(site) -> int:
    """How many requests are logged, once the log stops growing: gunicorn writes a request's
    line just after its answer, so the previous test's last line may still be on its way."""
    count = -1
    while True:
        now = len(requests_logged(site))
        if now == count:
            return now
        count = now
        time.sleep(0.05)


def random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes; return their md5."""
    digest = hashlib.md5()
    with open(path, "wb") as f:
        remaining = size
        while remaining:
            block = os.urandom(min(MiB, remaining))
            f.write(block)
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            digest.update(block)
    return digest.hexdigest()


def stored_file(site, result: dict) -> Path:
    return Path(site.env["MEDIA_ROOT"]) / result["final_name"]


def high_water_mark(pid: int) -> int:
    """Peak resident memory of a running process, in bytes (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    except OSError:
        return 0
    try:
        return psutil.Process(pid).memory_info().rss  # no /proc: sampled RSS
    except psutil.Error:
        return 0


def client_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = str(REPO)
    return env


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chunky_redis", *args],
        cwd=REPO,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "chunky_redis", *args],
        cwd=REPO,
        env=client_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def server_offset(status_url: str) -> int:
    return requests.get(status_url, timeout=5).json()["offset"]


def saved_upload(state_path: Path) -> dict | None:
    try:
        uploads = json.loads(state_path.read_text())["uploads"]
    except (FileNotFoundError, ValueError):
        return None
    return next(iter(uploads.values()), None)


# -- the command line without a server -------------------------------------------


def test_help_needs_no_django_settings():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert "upload" in result.stdout and "status" in result.stdout
    upload_help = run_cli("upload", "--help")
    assert "--chunk-size" in upload_help.stdout and "--auth-header" in upload_help.stdout


def test_the_client_does_not_import_django():
    code = (
        "import sys, chunky_redis.client.cli;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'django'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_bad_arguments_exit_2(tmp_path):
    assert run_cli("upload", "f", "http://x/upload/", "--chunk-size", "lots").returncode == 2
    assert run_cli("upload", "f", "http://x/upload/", "--auth-header", "no colon").returncode == 2


def test_missing_and_empty_files_fail_cleanly(tmp_path):
    missing = run_cli("upload", str(tmp_path / "nope.bin"), "http://127.0.0.1:9/upload/")
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    (tmp_path / "empty.bin").write_bytes(b"")
    empty = run_cli("upload", str(tmp_path / "empty.bin"), "http://127.0.0.1:9/upload/")
    assert empty.returncode == 1 and "empty" in empty.stderr


# -- uploads -----------------------------------------------------------------------


def test_python_api_uploads_a_multi_chunk_file(live, tmp_path):
    path = tmp_path / "data ünïcode.bin"
    size = 5 * MiB + 12345
    digest = random_file(path, size)
    before = log_mark(live)

    result = upload(path, live.endpoint, chunk_size="1M")

    assert result["status"] == "complete"
    assert result["size"] == size and result["offset"] == size
    assert result["filename"] == "data ünïcode.bin"
    assert file_md5(stored_file(live, result)) == digest
    assert not default_path(path).exists(), "the state file is removed once the upload is complete"
    puts = [r for r in requests_logged(live)[before:] if r[0] == "PUT"]
    assert [r[3] for r in puts] == list(range(0, size, MiB)), "each chunk sent once, in order"
    assert all(r[2] == 200 for r in puts)


def test_no_wait_returns_processing_then_status_reports_complete(live, tmp_path):
    path = tmp_path / "nowait.bin"
    digest = random_file(path, 3 * MiB)
    accepted = upload(path, live.endpoint, chunk_size=MiB, wait=False)
    assert accepted["status"] == "processing"
    final = wait_for(
        lambda: (s := status(accepted["status_url"]))["status"] == "complete" and s,
        timeout=60,
        message="the worker to complete the upload",
    )
    assert file_md5(stored_file(live, final)) == digest


def test_cli_upload_prints_json_status_and_exits_0(live, tmp_path):
    path = tmp_path / "cli.bin"
    digest = random_file(path, 2 * MiB + 1)
    result = run_cli("upload", str(path), live.endpoint, "--chunk-size", "512K", "--json")
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout.strip().splitlines()[-1])
    assert final["status"] == "complete" and final["size"] == 2 * MiB + 1
    assert file_md5(stored_file(live, final)) == digest
    assert "sent 2.0 MiB in 5 chunks" in result.stderr


def test_auth_headers_go_with_every_request(live, tmp_path):
    path = tmp_path / "auth.bin"
    random_file(path, 3 * MiB)
    before = log_mark(live)
    result = run_cli(
        "upload",
        str(path),
        live.endpoint,
        "--chunk-size",
        "1M",
        "--json",
        "--auth-header",
        "Authorization: Token s3cret",
        "--auth-header",
        "X-Other: 1",
    )
    assert result.returncode == 0, result.stderr
    logged = requests_logged(live)[before:]
    assert [r[0] for r in logged].count("PUT") == 3
    assert {r[4] for r in logged} == {"Token s3cret"}, "PUTs, the completion and the status polls"


def test_state_of_a_vanished_upload_starts_over(live, tmp_path):
    path = tmp_path / "gone.bin"
    digest = random_file(path, 2 * MiB)
    info = path.stat()
    gone = "0" * 32
    default_path(path).write_text(
        json.dumps(
            {
                "version": 1,
                "uploads": {
                    entry_key(live.endpoint, info.st_size, info.st_mtime_ns): {"upload_id": gone}
                },
            }
        )
    )
    messages: list[str] = []
    result = upload(path, live.endpoint, chunk_size=MiB, log=messages.append)
    assert result["upload_id"] != gone
    assert any("is gone" in m and "starting over" in m for m in messages), messages
    assert file_md5(stored_file(live, result)) == digest


@pytest.mark.fault
def test_resume_after_the_client_is_killed(live, tmp_path):
    path = tmp_path / "resume.bin"
    size = 48 * MiB + 777
    digest = random_file(path, size)
    state = default_path(path)
    args = ("upload", str(path), live.endpoint, "--chunk-size", "1M", "--json")

    # Slowed down so that it is surely killed in the middle.
    first = spawn_cli(*args, "--limit-rate", "16M")
    try:
        saved = wait_for(lambda: saved_upload(state), timeout=30, message="the state file")
        wait_for(
            lambda: server_offset(saved["status_url"]) >= 8 * MiB, timeout=30, message="8 MiB sent"
        )
        first.kill()
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    killed_at = server_offset(saved["status_url"])
    assert 8 * MiB <= killed_at < size
    logged_before = log_mark(live)

    second = run_cli(*args)

    assert second.returncode == 0, second.stderr
    final = json.loads(second.stdout.strip().splitlines()[-1])
    assert final["upload_id"] == saved["upload_id"] and final["status"] == "complete"
    resumed_at = int(re.search(r"resuming upload \w+ at byte (\d+)", second.stderr).group(1))
    # A chunk the dying client had fully sent may be recorded a moment after the kill.
    assert killed_at <= resumed_at <= killed_at + MiB
    puts = [r for r in requests_logged(live)[logged_before:] if r[0] == "PUT"]
    assert puts, "the second run sent chunks"
    assert all(r[1] != "/upload/" for r in puts), "the second run created no new upload"
    assert min(r[3] for r in puts) == resumed_at, (
        "nothing before the server's offset was sent again"
    )
    assert [r[3] for r in puts if r[2] == 200] == list(range(resumed_at, size, MiB))
    assert file_md5(stored_file(live, final)) == digest
    assert not state.exists()


@pytest.mark.fault
def test_retries_while_the_site_is_restarted(live, tmp_path):
    """Stop the site between chunks, start it again on the same port: the client waits, goes on."""
    path = tmp_path / "restart.bin"
    size = 24 * MiB + 5
    digest = random_file(path, size)
    env = {**live.env, "GUNICORN_CMD_ARGS": "", "GUNICORN_ACCESSLOG": ""}
    port = free_port()
    site = SiteProcess(env, port=port, name="restarted").start()
    try:
        client = spawn_cli(
            "upload",
            str(path),
            site.url + "/upload/",
            "--chunk-size",
            "1M",
            "--limit-rate",
            "8M",
            "--json",
        )
        saved = wait_for(
            lambda: saved_upload(default_path(path)), timeout=30, message="the state file"
        )
        wait_for(
            lambda: server_offset(saved["status_url"]) >= 4 * MiB, timeout=30, message="4 MiB sent"
        )
        site.stop()  # graceful: the chunk in flight is finished, the next one is refused
        stopped_at = server_offset(saved["status_url"].replace(site.url, live.url))
        assert stopped_at < size
        site = SiteProcess(env, port=port, name="restarted").start()
        out, err = client.communicate(timeout=120)
    finally:
        site.stop()
        if client.poll() is None:
            client.kill()
    assert client.returncode == 0, err
    assert "retrying" in err
    final = json.loads(out.strip().splitlines()[-1])
    assert final["status"] == "complete" and final["upload_id"] == saved["upload_id"]
    assert file_md5(stored_file(live, final)) == digest


@pytest.mark.slow
def test_memory_stays_flat_for_a_file_far_larger_than_a_chunk(live, tmp_path):
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    random_file(small, 1024)
    size = 256 * MiB
    digest = random_file(big, size)

    def peak_rss(path: Path) -> tuple[int, str]:
        proc = spawn_cli("upload", str(path), live.endpoint, "--chunk-size", "8M", "--json")
        peak = 0
        while proc.poll() is None:
            # VmHWM is the kernel's own peak RSS of the client (since its exec, unlike
            # wait4's ru_maxrss, which inherits the forked pytest's): sampling misses nothing.
            peak = max(peak, high_water_mark(proc.pid))
            time.sleep(0.005)
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        assert peak > 0
        return peak, out

    baseline, _ = peak_rss(small)
    started = time.monotonic()
    peak, out = peak_rss(big)
    elapsed = time.monotonic() - started
    growth = peak - baseline
    print(
        f"client peak RSS {peak / MiB:.1f} MiB, {growth / MiB:.1f} MiB over a 1 KiB upload; "
        f"256 MiB in {elapsed:.1f} s"
    )
    # Streaming keeps it near zero; 24 MiB would already catch one 8 MiB chunk held three times.
    assert growth < 24 * MiB, f"the client grew by {growth / MiB:.1f} MiB for a 256 MiB file"
    final = json.loads(out.strip().splitlines()[-1])
    try:
        assert file_md5(stored_file(live, final)) == digest
    finally:  # pytest keeps the temp directories of recent runs: do not leave 512 MiB there
        big.unlink()
        stored_file(live, final).unlink()


# -- status --------------------------------------------------------------------------


def test_status_command(live, tmp_path):
    path = tmp_path / "status.bin"
    random_file(path, MiB + 3)
    result = upload(path, live.endpoint, chunk_size=MiB)
    status_url = f"{live.endpoint}{result['upload_id']}/"

    as_json = run_cli("status", status_url, "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["status"] == "complete" and data["final_name"] == result["final_name"]

    human = run_cli("status", status_url)
    assert human.returncode == 0
    assert re.search(r"^status\s+complete$", human.stdout, re.M)
    assert re.search(r"^file\s+status\.bin \(1\.0 MiB\)$", human.stdout, re.M)
    assert result["final_name"] in human.stdout

    missing = run_cli("status", f"{live.endpoint}{'f' * 32}/", "--json")
    assert missing.returncode == 1
    assert json.loads(missing.stdout)["http_status"] == 404
    assert "No such upload" in missing.stderr


def test_status_of_an_unfinished_upload(live, tmp_path):
    path = tmp_path / "partial.bin"
    random_file(path, 3 * MiB)
    with open(path, "rb") as f:
        answer = requests.put(
            live.endpoint,
            data=f.read(MiB),
            timeout=10,
            headers={
                "Content-Range": f"bytes 0-{MiB - 1}/{3 * MiB}",
                "Content-Disposition": "attachment; filename=p.bin",
            },
        ).json()
    human = run_cli("status", f"{live.endpoint}{answer['upload_id']}/")
    assert human.returncode == 0
    assert re.search(r"^status\s+uploading$", human.stdout, re.M)
    assert re.search(r"^received\s+1\.0 MiB of 3\.0 MiB \(33%\)$", human.stdout, re.M)


def test_api_status_raises_for_unknown_uploads(live):
    with pytest.raises(ClientError) as info:
        status(f"{live.endpoint}{'e' * 32}/")
    assert info.value.status_code == 404


def test_unreachable_server_gives_up_after_the_retries(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"x" * 100)
    url = f"http://127.0.0.1:{free_port()}/upload/"
    started = time.monotonic()
    with pytest.raises(ClientError, match="Connection refused|Failed to establish"):
        upload(path, url, retries=2)
    assert time.monotonic() - started < 10
