"""The client as two functions, for scripts."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from .sizes import parse_size
from .transfer import DEFAULT_CHUNK_SIZE, DEFAULT_TIMEOUT, Uploader
from .transport import make_session, send


def upload(
    path: str | os.PathLike[str],
    url: str,
    *,
    chunk_size: int | str = DEFAULT_CHUNK_SIZE,
    headers: Mapping[str, str] | None = None,
    progress: bool | None = False,
    wait: bool = True,
    state_file: str | os.PathLike[str] | None = None,
    resume: bool = True,
    filename: str | None = None,
    retries: int = 8,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    wait_timeout: float | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Upload ``path`` to the endpoint ``url`` (``https://host/upload/``), resuming if it can.

    Returns the final status ({"status": "complete", "final_name", ...}), or the
    completion answer ({"status": "processing"}) with ``wait=False``; both carry
    ``status_url``, the upload's URL for ``status()``.
    Raises UploadFailed if the server's post-processing fails, ClientError otherwise.
    """
    uploader = Uploader(
        path,
        url,
        chunk_size=parse_size(chunk_size),
        headers=headers,
        progress=progress,
        state_file=state_file,
        resume=resume,
        filename=filename,
        retries=retries,
        timeout=timeout,
        wait_timeout=wait_timeout,
        log=log,
    )
    result = uploader.run(wait=wait)
    # A finished upload's status has no URL of its own: add it, so `status(result["status_url"])`
    # asks again whichever answer this is (the server's own URL wins when it sent one).
    return {"status_url": uploader.status_url, **result}


def status(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: tuple[float, float] = (10.0, 60.0),
) -> dict[str, Any]:
    """GET an upload's status URL (``https://host/upload/<id>/``); raises ServerError on 404/410."""
    with make_session(headers) as session:
        return send(session, "GET", url, timeout=timeout)
