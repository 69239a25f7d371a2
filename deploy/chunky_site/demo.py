"""The demo page at ``/``: jQuery-File-Upload sending resumable chunks to the chunky_redis protocol.

Everything the page does happens in the browser (static/chunky_site/demo.js);
this view only tells it where the endpoint is and how large a chunk to send.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.urls import reverse

from chunky_redis.conf import conf

DEFAULT_CHUNK_SIZE = 8 << 20
MIN_CHUNK_SIZE = 16 << 10
MAX_CHUNK_SIZE = 512 << 20
_SIZE_RE = re.compile(r"^\s*([0-9]+)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
# What the page loads from npm; if one is missing, `npm ci` has not run.
VENDOR_FILES = [
    "vendor/jquery/jquery.min.js",
    "vendor/blueimp-file-upload/vendor/jquery.ui.widget.js",
    "vendor/blueimp-file-upload/jquery.fileupload.js",
    "vendor/spark-md5/spark-md5.min.js",
]


def parse_size(value: str | None) -> int | None:
    """``"262144"``, ``"256k"``, ``"8M"``, ``"1GiB"`` -> bytes; None for anything else."""
    match = _SIZE_RE.match(value or "")
    if not match:
        return None
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def format_bytes(n: int) -> str:
    """1024-based, as the page's script shows sizes: ``8 MiB``, ``1.5 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            break
        value /= 1024
    return f"{value:.4g} {unit}" if unit != "B" else f"{n} B"


def chunk_size_for(request: HttpRequest) -> int:
    """The chunk size: ``?chunk=`` (for trying sizes out and for tests), else the site's default."""
    default = getattr(settings, "CHUNKY_DEMO_CHUNK_SIZE", DEFAULT_CHUNK_SIZE)
    size = parse_size(request.GET.get("chunk")) or default
    return min(max(size, MIN_CHUNK_SIZE), MAX_CHUNK_SIZE)


def index(request: HttpRequest) -> HttpResponse:
    chunk_size = chunk_size_for(request)
    max_bytes = conf.MAX_BYTES
    context = {
        "upload_url": reverse("chunky_redis:upload"),
        "chunk_size": chunk_size,
        "chunk_size_label": format_bytes(chunk_size),
        "max_bytes": max_bytes,
        "max_bytes_label": format_bytes(max_bytes) if max_bytes else "",
        "expiration_hours": round(conf.EXPIRATION.total_seconds() / 3600, 1),
        # The upload views check CSRF for users logged in with a session cookie.
        "csrf_token": get_token(request),
        "missing_vendor": [name for name in VENDOR_FILES if not finders.find(name)],
    }
    return render(request, "chunky_site/demo.html", context)


def chunked_upload_page(request: HttpRequest) -> HttpResponse:
    """A page written as django-chunked-upload's own demo is, against the chunked/ dialect."""
    chunk_size = chunk_size_for(request)
    context = {
        "upload_url": reverse("chunked_upload:upload"),
        "complete_url": reverse("chunked_upload:complete"),
        "chunk_size": chunk_size,
        "chunk_size_label": format_bytes(chunk_size),
        "missing_vendor": [name for name in VENDOR_FILES if not finders.find(name)],
    }
    return render(request, "chunky_site/chunked_upload_demo.html", context)


UPPY_BUNDLE = "vendor/uppy-demo/uppy-demo.js"


def uppy_page(request: HttpRequest) -> HttpResponse:
    """Uppy's Dashboard sending to the tus endpoint (files/), from the esbuild bundle."""
    chunk_size = chunk_size_for(request)
    context = {
        "endpoint": reverse("chunky_redis_tus:tus"),
        "chunk_size": chunk_size,
        "chunk_size_label": format_bytes(chunk_size),
        "missing_bundle": not finders.find(UPPY_BUNDLE),
    }
    return render(request, "chunky_site/uppy_demo.html", context)
