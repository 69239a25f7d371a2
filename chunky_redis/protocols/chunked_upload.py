"""The django-chunked-upload 2.x dialect over HTTP.

POST upload/    a multipart chunk in the field ``file``, ``Content-Range: bytes START-END/TOTAL``
                (none: the chunk is the whole file); without ``upload_id`` in the form it
                creates an upload, with it it appends; answers ``{upload_id, offset, expires}``
POST complete/  ``upload_id`` and ``md5`` (form fields, or JSON): hands the upload to the
                Celery finalization; answers the view's ``get_response_data()``

django-chunked-upload answers 403 to anonymous users, 404 for an unknown
upload, 410 for an expired one and 400, with ``{"detail": ...}`` (and the
server's ``offset`` on an offset mismatch), for everything else. Refusals it
has no notion of (a held lock, a quota, an unavailable Redis) keep the status
that says what they are, as in the chunky dialect.
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
from ..core.http import CONTENT_RANGE, clean_filename, is_upload_id, parse_content_range
from ..core.session import ChunkSession
from ..core.store import Upload
from . import bodies, form_chunks
from .base import (
    aborting,
    drain,
    iso,
    json_response,
    logger,
    report_bug,
)

# The same statuses and body as the chunky dialect's: django-chunked-upload's, which
# django-chunky-upload kept (an offset mismatch adds the server's ``offset``).
from .chunky import error_response
from .errors import LengthRequired, MethodNotAllowed
from .hooks import UploadHooks


@method_decorator(csrf_exempt, name="dispatch")  # enforced in enforce_csrf() for session users
class _DialectView(UploadHooks, View):
    http_method_names = ["post", "options"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            try:
                request.get_host()  # a Host outside ALLOWED_HOSTS: refuse before any work
                if (request.method or "").lower() not in self.http_method_names:
                    raise MethodNotAllowed(
                        f"{request.method} is not allowed here.", allow=self._allowed()
                    )
                self.check_permissions(request)
                return super().dispatch(request, *args, **kwargs)
            except SuspiciousOperation as e:
                logger.warning("chunky_redis: suspicious request refused: %s", e)
                raise exc.ChunkyError(str(e), code="suspicious_request") from e
        except exc.ChunkyError as e:
            drain(request)
            return error_response(e)
        except Exception:
            return error_response(report_bug(request, type(self)))

    def _allowed(self) -> list[str]:
        return [m.upper() for m in self.http_method_names]

    def options(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = HttpResponse(status=204)
        response["Allow"] = ", ".join(self._allowed())
        return response


class ChunkedUploadView(_DialectView):
    """``upload/``: one chunk. Override the hooks (those of UploadHooks and below) to adapt it."""

    field_name = "file"
    # True: a chunk without Content-Range is refused. False, as jQuery-File-Upload needs:
    # it sends a file smaller than one chunk without the header.
    fail_if_no_header = False

    def get_response_data(self, upload: Upload, request: HttpRequest) -> dict[str, Any]:
        """The body of an accepted chunk."""
        return {
            "upload_id": upload.upload_id,
            "offset": upload.offset,
            "expires": iso(upload.expires),
        }

    def post(self, request: HttpRequest) -> HttpResponse:
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            raise LengthRequired()
        header = request.headers.get(CONTENT_RANGE)
        if header is None and self.fail_if_no_header:
            raise exc.BadContentRange("This endpoint requires a Content-Range header.")
        byte_range = parse_content_range(header) if header is not None else None

        def open_session(upload_id: str | None, length: int | None) -> ChunkSession:
            if upload_id is not None and not is_upload_id(upload_id):
                raise exc.UploadNotFound()
            self.validate(request)  # the form's fields before the file are in request.POST
            return self.get_service().start_chunk(
                owner=self.get_owner(request),
                upload_id=upload_id,
                byte_range=byte_range,
                length=length,
                max_bytes=self.get_max_bytes(request),
                empty_file_ok=True,  # a file part with no byte is an empty file
                quota=self.get_quota(request),
            )

        chunk = form_chunks.receive(
            request, open_session, field_name=self.field_name, block_size=conf.BLOCK_SIZE
        )
        with aborting(chunk.session) as session:
            self.enforce_csrf(request)
            extra = self.get_extra_attrs(request) if session.is_new else None
            upload = session.finish(filename=clean_filename(chunk.filename), extra=extra)
        return json_response(self.get_response_data(upload, request))


class ChunkedUploadCompleteView(_DialectView):
    """``complete/``: check the md5 and hand the upload to the Celery finalization."""

    def get_response_data(self, upload: Upload, request: HttpRequest) -> dict[str, Any]:
        """The body of a successful completion (django-chunked-upload's default is ``{}``)."""
        return {
            "upload_id": upload.upload_id,
            "filename": upload.filename,
            "offset": upload.offset,
            "status": upload.status,
        }

    def post(self, request: HttpRequest) -> HttpResponse:
        fields = bodies.form_fields(request)
        self.enforce_csrf(request)
        # The field is "md5" unless the site checks another digest (then it is named after it).
        algorithm = conf.CHECKSUM_ALGORITHM
        upload_id, checksum = fields.get("upload_id", ""), fields.get(algorithm, "")
        required = f"Both 'upload_id' and '{algorithm}' are required."
        if not upload_id:
            raise exc.ChunkyError(required, code="missing_upload_id")
        if not checksum:
            raise exc.MissingChecksum(required)
        if not is_upload_id(upload_id):
            raise exc.UploadNotFound()
        self.validate(request)
        upload = self.get_service().complete(
            owner=self.get_owner(request), upload_id=upload_id, checksum=checksum
        )
        return json_response(self.get_response_data(upload, request))


@csrf_exempt  # a JSON 404 for every method; CSRF would answer unsafe ones with an HTML 403
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    drain(request)
    return error_response(exc.UploadNotFound("No such endpoint."))
