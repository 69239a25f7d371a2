"""The metrics endpoint a host mounts (chunky_redis.urls_metrics): Prometheus's text format.

404 while ``CHUNKY_REDIS_METRICS`` is off, so that mounting it always is harmless; with
``CHUNKY_REDIS_METRICS_TOKEN`` set, 401 without ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse

from .conf import conf
from .protocols.base import json_response
from .runtime import get_store


def metrics(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = json_response(
            {"detail": f"{request.method} is not allowed here.", "code": "method_not_allowed"},
            status=405,
        )
        response["Allow"] = "GET, HEAD"
        return response
    if not conf.METRICS:
        return json_response({"detail": "Metrics are off.", "code": "not_found"}, status=404)
    token = conf.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            response = json_response(
                {"detail": "The metrics need a bearer token.", "code": "not_authenticated"},
                status=401,
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    from .metrics import exposition

    body, content_type = exposition(get_store)
    scrape = HttpResponse(body, content_type=content_type)
    scrape["Cache-Control"] = "no-store"
    return scrape
