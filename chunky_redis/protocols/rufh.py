"""The IETF resumable-upload dialect (draft-ietf-httpbis-resumable-upload, interop 3 to 8).

POST/PUT/PATCH  <endpoint>        create an upload (Upload-Complete), with or without data
HEAD/GET        <endpoint><id>/   offset retrieval (Upload-Offset, Upload-Complete, ...)
PATCH           <endpoint><id>/   append at Upload-Offset; Upload-Complete: ?1 completes it
DELETE          <endpoint><id>/   cancel
OPTIONS         either            Upload-Limit

A request that completes the upload answers 200 with the completion's JSON (as
the chunky dialect's completion). WSGI cannot send 104 interim responses, so the
final response of a creation carries Location, and a client resumes from HEAD.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from ..conf import conf
from ..core import errors as exc
from ..core.http import (
    CONTENT_DISPOSITION,
    filename_from_content_disposition,
    is_upload_id,
)
from ..core.store import UPLOADING, Upload
from . import bodies
from . import rufh_digests as digests
from .base import (
    aborting,
    completion_data,
    drain,
    json_response,
    logger,
    report_bug,
    upload_url,
)
from .errors import MethodNotAllowed
from .hooks import UploadHooks
from .rufh_fields import (
    LATEST,
    PARTIAL_UPLOAD,
    VERSION_HEADER,
    Dialect,
    InconsistentLength,
    MissingUploadComplete,
    MissingUploadOffset,
    UnsupportedMediaType,
    dialect_for,
    sf_integer,
)
from .rufh_responses import empty_response, problem_response
from .rufh_uploads import BodyCutShort, body_length_of, declared_length, filename_from_metadata

CREATION_METHODS = ("POST", "PUT", "PATCH")


@method_decorator(csrf_exempt, name="dispatch")  # enforced in enforce_csrf() for session users
class ResumableUploadView(UploadHooks, View):
    """Override the hooks (those of UploadHooks, and get_response_data) to adapt it to a host."""

    http_method_names = ["post", "put", "patch", "head", "get", "delete", "options"]
    # Whole-file digests kept while streaming for every upload (the completing response's
    # Repr-Digest); a client's Repr-Digest or Want-Repr-Digest at creation adds its own.
    repr_digests: tuple[str, ...] = ("sha256",)

    def get_response_data(self, upload: Upload, request: HttpRequest) -> dict[str, Any]:
        """The body of the response that completes an upload (the chunky dialect's completion)."""
        return completion_data(upload, self.resource_url(request, upload.upload_id))

    # -- plumbing --------------------------------------------------------------
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        upload_id: str | None = kwargs.get("upload_id")
        self.dialect = Dialect(LATEST)
        self.headers: dict[str, str] = {}  # what every answer carries once the upload is known
        try:
            try:
                request.get_host()  # a Host outside ALLOWED_HOSTS: refuse before any work
                self.dialect = dialect_for(request)
                method = request.method or ""
                if method == "OPTIONS":
                    return self.answer_options(upload_id)
                handler = self._handler(method, upload_id)
                self.check_permissions(request)
                self.enforce_csrf(request)
                return handler(request)
            except SuspiciousOperation as e:
                logger.warning("chunky_redis: suspicious request refused: %s", e)
                raise exc.ChunkyError(str(e), code="suspicious_request") from e
        except exc.ChunkyError as e:
            drain(request)
            # A 413 SHOULD say the limits; every refusal does.
            self.headers.setdefault("Upload-Limit", self.limit(request, None))
            return problem_response(e, self.dialect, self.headers)
        except Exception:
            return problem_response(report_bug(request, type(self)), self.dialect, self.headers)

    def _handler(self, method: str, upload_id: str | None) -> Callable[[HttpRequest], HttpResponse]:
        if upload_id is None:
            if method not in CREATION_METHODS:
                raise self._not_allowed(upload_id)
            return self.create
        if not is_upload_id(upload_id):
            raise exc.UploadNotFound()
        handlers = {"HEAD": self.offset, "GET": self.offset, "PATCH": self.append}
        handlers["DELETE"] = self.cancel
        if method not in handlers:
            raise self._not_allowed(upload_id)
        return partial(handlers[method], upload_id=upload_id)

    def _not_allowed(self, upload_id: str | None) -> MethodNotAllowed:
        allow = CREATION_METHODS if upload_id is None else ("HEAD", "GET", "PATCH", "DELETE")
        return MethodNotAllowed(allow=[*allow, "OPTIONS"])

    def resource_url(self, request: HttpRequest, upload_id: str) -> str:
        return upload_url(request, upload_id)

    def limit(self, request: HttpRequest, upload: Upload | None) -> str:
        max_age = None
        if upload is not None and upload.status == UPLOADING:
            max_age = (upload.expires - self.service.store.now()) // 1000
        return self.dialect.limit(max_size=self.get_max_bytes(request), max_age_s=max_age)

    def _know(self, request: HttpRequest, upload: Upload, *, location: bool = False) -> None:
        """Headers every later answer to this request carries (errors included)."""
        if location:
            self.headers["Location"] = self.resource_url(request, upload.upload_id)
        if upload.status == UPLOADING:
            self.headers["Upload-Offset"] = str(upload.offset)
        self.headers["Upload-Limit"] = self.limit(request, upload)

    # -- requests --------------------------------------------------------------
    def answer_options(self, upload_id: str | None) -> HttpResponse:
        allow = CREATION_METHODS if upload_id is None else ("HEAD", "GET", "PATCH", "DELETE")
        headers = {
            "Allow": ", ".join([*allow, "OPTIONS"]),
            "Accept-Patch": PARTIAL_UPLOAD,
            "Upload-Limit": self.limit(self.request, None),
        }
        return empty_response(204, self.dialect, headers)

    def offset(self, request: HttpRequest, upload_id: str) -> HttpResponse:
        self._refuse_state_headers(request)
        upload = self.service.status(owner=self.get_owner(request), upload_id=upload_id)
        self._know(request, upload)
        headers = {**self.headers, **self.dialect.complete_headers(upload.status != UPLOADING)}
        headers["Upload-Offset"] = str(upload.offset)
        if upload.length_known:
            headers["Upload-Length"] = str(upload.size)
        return empty_response(204, self.dialect, headers)

    def cancel(self, request: HttpRequest, upload_id: str) -> HttpResponse:
        self._refuse_state_headers(request)
        self.service.terminate(owner=self.get_owner(request), upload_id=upload_id)
        return empty_response(204, self.dialect, {})

    def create(self, request: HttpRequest) -> HttpResponse:
        complete = self._upload_complete(request)
        body_length = body_length_of(request)
        length = declared_length(request, offset=0, body_length=body_length, complete=complete)
        if length is not None and body_length > length:
            raise InconsistentLength(
                f"The body has {body_length} bytes; Upload-Length is {length}."
            )
        self.validate(request)
        filename = filename_from_content_disposition(request.headers.get(CONTENT_DISPOSITION, ""))
        extra = self.get_extra_attrs(request)
        upload = self.service.create(
            owner=self.get_owner(request),
            length=length,
            max_bytes=self.get_max_bytes(request),
            quota=self.get_quota(request),
            filename=filename or filename_from_metadata(request.headers.get("Upload-Metadata")),
            extra={**extra, **digests.to_extra(digests.digests_in(request, "Repr-Digest"))},
            digests=digests.wanted(request, self.repr_digests),
        )
        self._know(request, upload, location=True)
        if body_length:
            upload = self._write(request, upload, 0, body_length)
        if complete:
            return self._complete(request, upload)
        headers = {**self.headers, **self.dialect.complete_headers(False)}
        return empty_response(201, self.dialect, headers)

    def append(self, request: HttpRequest, upload_id: str) -> HttpResponse:
        complete = self._upload_complete(request)
        provided = sf_integer(request.headers.get("Upload-Offset"))
        if provided is None:
            raise MissingUploadOffset()
        body_length = body_length_of(request)
        # An empty append may come without a Content-Type: it carries no patch document.
        typed = body_length or request.content_type
        if (
            self.dialect.requires_partial_upload
            and typed
            and request.content_type != PARTIAL_UPLOAD
        ):
            raise UnsupportedMediaType()
        service, owner = self.service, self.get_owner(request)
        upload = service.status(owner=owner, upload_id=upload_id)
        self._know(request, upload)
        if upload.status != UPLOADING:
            # MUST NOT modify a completed upload, and MUST reject the request (4.4.2).
            raise exc.AlreadyComplete(status=upload.status)
        if provided != upload.offset:
            raise exc.OffsetMismatch(upload.offset, provided)
        length = declared_length(
            request, offset=provided, body_length=body_length, complete=complete
        )
        if length is not None:
            if not upload.length_known:
                max_bytes = self.get_max_bytes(request)
                upload = service.declare_length(
                    owner=owner, upload_id=upload_id, length=length, max_bytes=max_bytes
                )
            elif length != upload.size:
                raise exc.TotalChanged(length, upload.size)
        if body_length:
            self.validate(request)
            upload = self._write(request, upload, provided, body_length)
        if complete:
            return self._complete(request, upload)
        headers = {**self.headers, **self.dialect.complete_headers(False)}
        return empty_response(self.dialect.append_status, self.dialect, headers)

    # -- steps -------------------------------------------------------------------
    def _upload_complete(self, request: HttpRequest) -> bool:
        complete = self.dialect.upload_complete(request)
        if complete is None:
            raise MissingUploadComplete()
        return complete

    def _refuse_state_headers(self, request: HttpRequest) -> None:
        # Versions 3-6: offset retrieval and cancellation carrying them MUST be refused.
        names = ("Upload-Offset", "Upload-Complete", "Upload-Incomplete")
        if self.dialect.version <= 6 and any(n in request.headers for n in names):
            raise exc.ChunkyError(
                f"A {request.method} carries no Upload-Offset or Upload-Complete.",
                code="unexpected_upload_headers",
            )

    def _write(self, request: HttpRequest, upload: Upload, offset: int, length: int) -> Upload:
        """Append the body at ``offset``, checked against its Content-Digest while it streams.

        A body cut short is kept as far as it came (the draft's SHOULD); the request then
        completes nothing and the client resumes from the offset HEAD gives.
        """
        session = self.service.start_append(
            owner=upload.owner,
            upload_id=upload.upload_id,
            offset=offset,
            length=length,
            max_bytes=self.get_max_bytes(request),
            length_unknown_ok=True,
            chunk_digest=digests.chunk_digest(request),
            keep_partial=True,
        )
        with aborting(session):
            received = bodies.stream_prefix(request, session, length, conf.BLOCK_SIZE)
            upload = session.finish()
        self._know(request, upload)
        if received < length:
            raise BodyCutShort(received, length)
        return upload

    def _complete(self, request: HttpRequest, upload: Upload) -> HttpResponse:
        service = self.service
        if digests.digests_in(request, "Repr-Digest") or upload.extra.get("repr_digest"):
            upload = service.status(owner=upload.owner, upload_id=upload.upload_id)
            try:
                digests.check_repr(service, upload, request)
            except digests.ReprDigestMismatch:
                service.terminate(owner=upload.owner, upload_id=upload.upload_id)
                raise
        upload = service.complete(owner=upload.owner, upload_id=upload.upload_id, checksum=None)
        response = json_response(self.get_response_data(upload, request))
        headers = {**self.headers, **self.dialect.complete_headers(True)}
        headers["Location"] = self.resource_url(request, upload.upload_id)
        headers["Upload-Offset"] = str(upload.offset)
        headers[VERSION_HEADER] = str(self.dialect.version)
        if repr_digest := digests.repr_header(upload):
            headers["Repr-Digest"] = repr_digest
        for name, value in headers.items():
            response[name] = value
        return response
