"""The bundled site's own endpoints: the health check, and the finished files at MEDIA_URL."""

from __future__ import annotations

import errno
import logging
import os
import tempfile

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.http import FileResponse, HttpRequest, JsonResponse
from django.utils._os import safe_join
from django.views.decorators.http import require_safe

from chunky_redis.conf import conf
from chunky_redis.runtime import get_redis

logger = logging.getLogger("chunky_site")

# Uploaded files are the clients' bytes, served on the API's own origin: a file named page.html
# must never run as a page there (stored XSS). Every answer is a download the browser neither
# renders nor sniffs, and a CSP sandbox disarms it should a browser render it anyway.
# deploy/nginx/chunky_redis.conf adds the same headers to its /media/ location.
DOWNLOAD_HEADERS = {
    "Content-Type": "application/octet-stream",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
}


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail, "code": code}, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _error(400, "bad_request", "Bad request.")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _error(403, "permission_denied", "You do not have permission to perform this action.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return _error(404, "not_found", "No such endpoint.")


def server_error(request: HttpRequest) -> JsonResponse:
    # Django has logged the traceback (logger django.request) before calling this.
    return _error(
        500, "server_error", "The server failed to handle the request; it has been logged."
    )


def health(request: HttpRequest) -> JsonResponse:
    """200 when Redis answers and the upload directory takes a write, else 503 naming what failed.

    The answer says which part failed, never how (no host, port or path): that goes to the log.
    """
    problems = {}
    try:
        get_redis().ping()
    except Exception as e:  # any failure to reach Redis is a health failure
        logger.warning("healthz: Redis does not answer: %s: %s", type(e).__name__, e)
        problems["redis"] = "unavailable"
    problem = upload_dir_problem(
        conf.UPLOAD_DIR, getattr(settings, "CHUNKY_HEALTH_MIN_FREE_BYTES", 1 << 20)
    )
    if problem:
        problems["upload_dir"] = problem
    response = JsonResponse(
        {"status": "unhealthy" if problems else "ok", "problems": problems},
        status=503 if problems else 200,
    )
    response["Cache-Control"] = "no-store"
    return response


def upload_dir_problem(directory: str, min_free: int) -> str | None:
    """None when a chunk can be written to ``directory``; else "full" or "not writable".

    A real write, not os.access(): root passes every permission check, and only a
    write notices a read-only mount or a full disk.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".healthz-", dir=directory)  # not a .part: never swept
        try:
            os.write(fd, b"\0" * 4096)
        finally:
            os.close(fd)
            os.unlink(probe)
        stats = os.statvfs(directory)
    except OSError as e:
        logger.warning("healthz: cannot write to the upload directory %s: %s", directory, e)
        return "full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "not writable"
    free = stats.f_bavail * stats.f_frsize
    if free < min_free:
        logger.warning(
            "healthz: the upload directory %s has %d bytes free, below %d",
            directory,
            free,
            min_free,
        )
        return "full"
    return None


@require_safe
def media(request: HttpRequest, path: str) -> FileResponse | JsonResponse:
    """A finished file of the default final storage (MEDIA_ROOT), always as a download."""
    try:
        full_path = safe_join(settings.MEDIA_ROOT, path)
    except SuspiciousFileOperation:
        full_path = ""
    if not full_path or not os.path.isfile(full_path):
        return JsonResponse({"detail": "No such file.", "code": "not_found"}, status=404)
    response = FileResponse(
        open(full_path, "rb"), as_attachment=True, filename=os.path.basename(full_path)
    )
    for name, value in DOWNLOAD_HEADERS.items():
        response[name] = value
    return response
