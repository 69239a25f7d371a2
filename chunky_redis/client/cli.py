"""``python -m chunky_redis upload FILE URL`` and ``python -m chunky_redis status URL``.

Exit status: 0 when the upload is complete (or accepted, with --no-wait), 1 when
it failed or the server refused it, 2 for bad arguments, 130 when interrupted.
Progress and messages go to stderr; the final status goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from tqdm import tqdm

from .api import status
from .errors import ClientError, ServerError, UploadFailed
from .sizes import format_size, parse_size
from .transfer import DEFAULT_CHUNK_SIZE, DEFAULT_TIMEOUT, Uploader
from .transport import parse_header

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chunky_redis",
        description="Resumable chunked uploads to a chunky_redis server.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "upload",
        help="upload a file, resuming an interrupted upload of it",
        description="Upload FILE in chunks to the upload endpoint URL "
        "(e.g. http://127.0.0.1:8000/upload/). Run the same command again after an "
        "interruption: it continues from the server's offset.",
    )
    up.add_argument("file", metavar="FILE")
    up.add_argument("url", metavar="URL", help="the upload endpoint, e.g. https://host/upload/")
    up.add_argument(
        "--chunk-size",
        type=_size,
        default=DEFAULT_CHUNK_SIZE,
        metavar="N",
        help="bytes per request: 4096, 512K, 8M, 1G (default 8M)",
    )
    _add_common(up)
    up.add_argument(
        "--state-file",
        metavar="PATH",
        help="where to remember the upload id for resuming (default: FILE.chunky.json)",
    )
    up.add_argument(
        "--no-resume", action="store_true", help="start a new upload; write no state file"
    )
    up.add_argument(
        "--name", metavar="NAME", help="the file name to give the server (default: FILE's name)"
    )
    up.add_argument(
        "--no-wait",
        action="store_true",
        help="return once the upload is accepted, without waiting for post-processing",
    )
    up.add_argument(
        "--wait-timeout", type=float, metavar="SECONDS", help="give up waiting after this long"
    )
    up.add_argument(
        "--retries",
        type=int,
        default=8,
        metavar="N",
        help="consecutive failed attempts tolerated, with exponential backoff (default 8)",
    )
    up.add_argument(
        "--limit-rate", type=_size, metavar="N", help="send at most N bytes per second (e.g. 10M)"
    )
    bar = up.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show the progress bar even when stderr is not a terminal",
    )
    bar.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show the progress bar"
    )

    st = commands.add_parser(
        "status",
        help="show an upload's status",
        description="Show the status of the upload at URL (https://host/upload/<id>/).",
    )
    st.add_argument("url", metavar="URL")
    _add_common(st)
    st.add_argument(
        "--wait", action="store_true", help="poll until the upload is complete or failed"
    )
    return parser


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--auth-header",
        action="append",
        default=[],
        type=_header,
        metavar='"NAME: VALUE"',
        help='a header sent with every request, e.g. "Authorization: Token abc" (repeatable)',
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT[1],
        metavar="SECONDS",
        help=f"seconds to wait for an answer (default {DEFAULT_TIMEOUT[1]:g})",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the final status as one JSON line"
    )


def _size(value: str) -> int:
    try:
        return parse_size(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _header(value: str) -> tuple[str, str]:
    try:
        return parse_header(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    headers = dict(args.auth_header)
    try:
        if args.command == "upload":
            return _upload(args, headers)
        return _status(args, headers)
    except KeyboardInterrupt:
        _err("interrupted; run the same command again to resume")
        return EXIT_INTERRUPTED


def _upload(args: argparse.Namespace, headers: dict[str, str]) -> int:
    uploader = Uploader(
        args.file,
        args.url,
        chunk_size=args.chunk_size,
        headers=headers,
        progress=args.progress,
        state_file=args.state_file,
        resume=not args.no_resume,
        filename=args.name,
        retries=args.retries,
        timeout=(DEFAULT_TIMEOUT[0], args.timeout),
        wait_timeout=args.wait_timeout,
        limit_rate=args.limit_rate,
        log=_err,
    )
    try:
        result = uploader.run(wait=not args.no_wait)
    except UploadFailed as e:
        _print_status(e.status, args.json)
        _err(f"error: {e}")
        return EXIT_FAILED
    except ClientError as e:
        _err(f"error: {e}")
        if uploader.upload_id and uploader.state is not None:
            _err(f"the upload can be resumed: run the same command again ({uploader.status_url})")
        return EXIT_FAILED
    except KeyboardInterrupt:
        where = f" at byte {uploader.offset} of {uploader.size}" if uploader.upload_id else ""
        _err(f"interrupted{where}; run the same command again to resume")
        return EXIT_INTERRUPTED
    _print_status(result, args.json)
    _err(_summary(uploader))
    return EXIT_OK


def _status(args: argparse.Namespace, headers: dict[str, str]) -> int:
    timeout = (DEFAULT_TIMEOUT[0], args.timeout)
    try:
        result = status(args.url, headers=headers, timeout=timeout)
        while args.wait and result.get("status") in ("uploading", "processing"):
            time.sleep(1.0)
            result = status(args.url, headers=headers, timeout=timeout)
    except ServerError as e:
        if args.json:
            print(json.dumps({"http_status": e.status_code, **e.body}, sort_keys=True), flush=True)
        _err(f"error: {e}")
        return EXIT_FAILED
    except ClientError as e:
        _err(f"error: {e}")
        return EXIT_FAILED
    _print_status(result, args.json)
    return EXIT_FAILED if result.get("status") in ("failed", "expired") else EXIT_OK


def _print_status(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, sort_keys=True), flush=True)
        return
    size, offset = result.get("size"), result.get("offset")
    lines = [("upload", result.get("upload_id")), ("status", result.get("status"))]
    if result.get("filename"):
        lines.append(
            (
                "file",
                result["filename"] + (f" ({format_size(size)})" if isinstance(size, int) else ""),
            )
        )
    if isinstance(size, int) and isinstance(offset, int) and result.get("status") == "uploading":
        lines.append(
            (
                "received",
                f"{format_size(offset)} of {format_size(size)} ({offset / max(size, 1):.0%})",
            )
        )
    for label, key in (
        ("stored as", "final_name"),
        ("url", "final_url"),
        ("reason", "reason"),
        ("completed", "completed"),
        ("expires", "expires"),
        ("status url", "status_url"),
    ):
        if result.get(key) and not (key == "expires" and result.get("status") == "complete"):
            lines.append((label, result[key]))
    print("\n".join(f"{label:<11}{value}" for label, value in lines), flush=True)


def _summary(uploader: Uploader) -> str:
    stats = uploader.stats
    seconds = max(time.monotonic() - stats.started, 1e-9)
    rate = stats.bytes_sent / max(stats.upload_seconds, 1e-9) / 1e6
    text = (
        f"sent {format_size(stats.bytes_sent)} in {stats.chunks} chunks, "
        f"{seconds:.1f} s in all ({rate:.0f} MB/s while sending)"
    )
    if stats.resumed_from:
        text += f"; resumed at byte {stats.resumed_from}"
    if stats.retries:
        text += f"; {stats.retries} retries"
    return text


def _err(message: str) -> None:
    tqdm.write(message, file=sys.stderr)
