"""The django-chunky-upload dialect over HTTP.

PUT  upload/        create an upload with its first chunk
PUT  upload/<id>/   append a chunk (Content-Range: bytes START-END/TOTAL)
POST upload/<id>/   complete, with the checksum ({"md5": ...} or a form field)
POST upload/        the whole file and its checksum in one request
GET  upload/<id>/   the upload's state, never cached
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from ..conf import conf
from ..core import errors as exc
from ..core.http import CONTENT_RANGE, is_upload_id, parse_content_range
from ..core.session import ChunkSession
from ..core.store import Upload
from . import bodies
from .base import (
    DJANGO_UPLOAD_STATUSES,
    aborting,
    completion_data,
    detail_response,
    drain,
    iso,
    json_response,
    logger,
    report_bug,
    status_in,
    upload_url,
)
from .errors import LengthRequired, MethodNotAllowed
from .hooks import UploadHooks

# How this dialect answers each of the core's errors; any other is a 400. They are
# django-chunked-upload's statuses, which django-chunky-upload kept.
# (tus and the IETF draft answer an offset mismatch with 409, this dialect with 400.)
STATUSES = DJANGO_UPLOAD_STATUSES


def status_for(error: exc.ChunkyError) -> int:
    return status_in(error, STATUSES)


exc.install_legacy_status(status_for)


def error_response(error: exc.ChunkyError) -> JsonResponse:
    """``{"detail", "code", ...facts}`` with this dialect's status and headers."""
    return detail_response(error, status_for(error))


@method_decorator(csrf_exempt, name="dispatch")  # enforced in enforce_csrf() for session users
class ChunkedUploadView(UploadHooks, View):
    """Override the hooks below to adapt the protocol to a host app."""

    field_name = "file"
    fail_if_no_header = False
    http_method_names = ["get", "head", "put", "post", "options"]

    # -- hooks (and those of UploadHooks) -----------------------------------------
    def get_response_data(self, upload: Upload, request: HttpRequest) -> dict[str, Any]:
        """The body of a successful completion."""
        return completion_data(upload, self.status_url(request, upload.upload_id))

    # -- plumbing --------------------------------------------------------------
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        upload_id = kwargs.get("upload_id")
        try:
            try:
                request.get_host()  # a Host outside ALLOWED_HOSTS: refuse before any work
                if (request.method or "").lower() not in self.http_method_names:
                    raise self._not_allowed(request, upload_id)
                if upload_id is not None and not is_upload_id(upload_id):
                    raise exc.UploadNotFound()
                self.check_permissions(request)
                if not (request.method == "POST" and upload_id is None):
                    self.enforce_csrf(request)  # the one-shot upload checks once its handler is set
                return super().dispatch(request, *args, **kwargs)
            except SuspiciousOperation as e:
                # Django answers these with an HTML 400 page; here they are JSON like any refusal.
                logger.warning("chunky_redis: suspicious request refused: %s", e)
                raise exc.ChunkyError(str(e), code="suspicious_request") from e
        except exc.ChunkyError as e:
            drain(request)
            return error_response(e)
        except Exception:
            return error_response(report_bug(request, type(self)))

    def allowed_methods(self, upload_id: str | None) -> list[str]:
        """What the URL answers: an upload's URL reads and writes, the collection only writes."""
        methods = [m.upper() for m in self.http_method_names if hasattr(self, m)]
        if upload_id is None:
            methods = [m for m in methods if m not in ("GET", "HEAD")]
        return methods

    def _not_allowed(self, request: HttpRequest, upload_id: str | None) -> MethodNotAllowed:
        return MethodNotAllowed(
            f"{request.method} is not allowed here.", allow=self.allowed_methods(upload_id)
        )

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        raise self._not_allowed(request, kwargs.get("upload_id"))

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = HttpResponse(status=204)
        response["Allow"] = ", ".join(self.allowed_methods(kwargs.get("upload_id")))
        return response

    def status_url(self, request: HttpRequest, upload_id: str) -> str:
        return upload_url(request, upload_id)

    # -- handlers --------------------------------------------------------------
    def get(self, request: HttpRequest, upload_id: str | None = None) -> HttpResponse:
        if upload_id is None:
            raise MethodNotAllowed(
                "GET needs an upload id: GET upload/<upload_id>/.",
                allow=self.allowed_methods(None),
            )
        upload = self.get_service().status(owner=self.get_owner(request), upload_id=upload_id)
        return json_response(self.status_data(upload, request))

    def put(self, request: HttpRequest, upload_id: str | None = None) -> HttpResponse:
        session, body = self._start(request, upload_id)
        with aborting(session):
            body = bodies.stream(
                request, body, session, field_name=self.field_name, block_size=conf.BLOCK_SIZE
            )
            # Only a new upload records extra attributes: don't run the hook for every chunk.
            extra = self.get_extra_attrs(request) if session.is_new else None
            upload = session.finish(filename=body.filename, extra=extra)
        return json_response(self.chunk_data(upload))

    def post(self, request: HttpRequest, upload_id: str | None = None) -> HttpResponse:
        if upload_id is None:
            return self._upload_whole(request)
        fields = bodies.form_fields(request)
        checksum = self._checksum_from(request, fields)
        upload = self.get_service().complete(
            owner=self.get_owner(request), upload_id=upload_id, checksum=checksum
        )
        return json_response(self.get_response_data(upload, request))

    def _upload_whole(self, request: HttpRequest) -> HttpResponse:
        session, body = self._start(request, None)
        with aborting(session):
            bodies.install_streaming_handler(
                request, session, field_name=self.field_name, block_size=conf.BLOCK_SIZE
            )
            self.enforce_csrf(request)
            body = bodies.stream(
                request, body, session, field_name=self.field_name, block_size=conf.BLOCK_SIZE
            )
            checksum = self._checksum_from(request, {**body.fields})
            upload = session.finish_and_complete(
                checksum, filename=body.filename, extra=self.get_extra_attrs(request)
            )
        return json_response(self.get_response_data(upload, request))

    def _start(
        self, request: HttpRequest, upload_id: str | None
    ) -> tuple[ChunkSession, bodies.Body]:
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            raise LengthRequired()
        header = request.headers.get(CONTENT_RANGE)
        if header is None and self.fail_if_no_header:
            raise exc.BadContentRange("This endpoint requires a Content-Range header.")
        byte_range = parse_content_range(header) if header is not None else None
        body = bodies.inspect(request, max_json_body=conf.MAX_JSON_BODY)
        self.validate(request)
        session = self.get_service().start_chunk(
            owner=self.get_owner(request),
            upload_id=upload_id,
            byte_range=byte_range,
            length=body.length,
            max_bytes=self.get_max_bytes(request),
            # An empty file: a multipart file part, or a body that names its file, with no byte.
            empty_file_ok=body.kind == "multipart" or bool(body.filename),
            quota=self.get_quota(request),
        )
        return session, body

    def _checksum_from(self, request: HttpRequest, fields: dict[str, str]) -> str:
        algorithm = conf.CHECKSUM_ALGORITHM
        for name in (algorithm, "checksum"):
            value = fields.get(name) or request.GET.get(name)
            if value:
                return value
        raise exc.MissingChecksum(
            f"Completion needs the file's {algorithm} (hex) in the field '{algorithm}'."
        )

    # -- representations ---------------------------------------------------------
    def chunk_data(self, upload: Upload) -> dict[str, Any]:
        return {
            "upload_id": upload.upload_id,
            "offset": upload.offset,
            "expires": iso(upload.expires),
        }

    def status_data(self, upload: Upload, request: HttpRequest) -> dict[str, Any]:
        data: dict[str, Any] = {
            "upload_id": upload.upload_id,
            "status": upload.status,
            "filename": upload.filename,
            "offset": upload.offset,
            "size": upload.size,
            "expires": iso(upload.expires),
            "created": iso(upload.created),
            "checksum_algorithm": upload.algorithm,
        }
        if upload.status == "complete":
            data.update(
                final_name=upload.final_name,
                final_url=upload.final_url,
                completed=iso(upload.completed),
            )
        if upload.reason:
            data["reason"] = upload.reason
        return data


@csrf_exempt  # a JSON 404 for every method; CSRF would answer unsafe ones with an HTML 403
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    drain(request)
    return error_response(exc.UploadNotFound("No such endpoint."))
