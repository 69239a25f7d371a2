"""The hooks every dialect's view shares: who may upload, who owns an upload, what
limits apply, CSRF. A host app overrides them on its subclass of a dialect's view."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware

from ..conf import conf
from ..core.quotas import Quota
from ..core.uploads import UploadService
from ..runtime import shared_service
from .errors import NotAuthenticated, PermissionDenied


class UploadHooks:
    def check_permissions(self, request: HttpRequest) -> None:
        """Raise a ChunkyError to refuse the request (403 for anonymous by default)."""
        if not request.user.is_authenticated and not conf.ALLOW_ANONYMOUS:
            raise NotAuthenticated()

    def validate(self, request: HttpRequest) -> None:
        """Raise a ChunkyError to refuse a chunk; runs before any byte is written."""

    def get_max_bytes(self, request: HttpRequest) -> int | None:
        return conf.MAX_BYTES

    def get_quota(self, request: HttpRequest) -> Quota:
        """What one owner may have in flight; anonymous users share one owner, so one quota."""
        return Quota(max_uploads=conf.MAX_UPLOADS_IN_FLIGHT, max_bytes=conf.MAX_BYTES_IN_FLIGHT)

    def get_extra_attrs(self, request: HttpRequest) -> dict[str, Any]:
        """Attributes stored with a new upload and passed to the upload_completed signal."""
        return {}

    def get_owner(self, request: HttpRequest) -> str:
        return str(request.user.pk) if request.user.is_authenticated else ""

    def get_service(self) -> UploadService:
        """The upload service; by default one per process (``runtime.shared_service()``), built
        from the settings. Override it to give a view its own (built with
        ``runtime.get_service()``, or by hand)."""
        return shared_service()

    @cached_property
    def service(self) -> UploadService:
        """``get_service()``, asked once per request (a view per request): a tus PATCH that
        fixes the length, appends and completes needs it three times."""
        return self.get_service()

    def enforce_csrf(self, request: HttpRequest) -> None:
        """CSRF protection for browsers that authenticate with a session cookie, as Django does.

        Anonymous and token-authenticated clients carry no ambient credential,
        so there is nothing to forge; for them the upload id is the capability.
        """
        if not (request.user.is_authenticated and settings.SESSION_COOKIE_NAME in request.COOKIES):
            return
        middleware = CsrfViewMiddleware(_unused_view)
        reason = middleware.process_view(request, _unused_view, (), {})
        if reason is not None:
            raise PermissionDenied("CSRF verification failed.", code="csrf_failed")


def _unused_view(request: HttpRequest) -> HttpResponse:
    """The view and next handler the CSRF check requires; it never calls them (and, without a
    ``csrf_exempt`` attribute, this view does not exempt the request)."""
    return HttpResponse()
