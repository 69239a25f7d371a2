"""The tus 1.0 dialect over HTTP (tus.io, resumable upload protocol 1.0.x).

OPTIONS <mount>        what the server supports (Tus-Version, Tus-Extension, Tus-Max-Size...)
POST    <mount>        create an upload (Upload-Length or Upload-Defer-Length: 1); a body
                       with it is its first bytes (creation-with-upload)
HEAD    <mount><id>    its offset, length, metadata and expiry, never cached; still
                       answers once the upload is complete (offset == length)
PATCH   <mount><id>    append at Upload-Offset (Upload-Checksum checks the body)
DELETE  <mount><id>    terminate it

An upload completes when its offset reaches its length: it is then handed to the
same post-processing as every dialect's (``UploadService.complete``), which sends
``upload_completed`` once. Mount ``chunky_redis.urls_tus`` where you like.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from ..conf import conf
from ..core import errors as exc
from ..core.checksums import ChunkDigest
from ..core.concatenation import CONCAT_FINALS
from ..core.http import CACHE_CONTROL, clean_filename, is_upload_id
from ..core.store import CONCAT_PARTS, UPLOADING, Upload
from . import tus_headers as th
from .base import drain, logger, report_bug
from .bodies import stream_prefix
from .errors import LengthRequired, MethodNotAllowed
from .hooks import UploadHooks
from .tus_errors import error_response, no_content

COLLECTION_METHODS = ("OPTIONS", "POST")
TUS_CONCAT = "tus_concat"  # extra: "partial", or the final upload's Upload-Concat
UPLOAD_METHODS = ("OPTIONS", "HEAD", "PATCH", "DELETE")


@method_decorator(csrf_exempt, name="dispatch")  # enforced in enforce_csrf() for session users
class TusUploadView(UploadHooks, View):
    """Override the hooks (UploadHooks) to adapt it to a host app, as for the chunky view."""

    http_method_names = ["options", "head", "post", "patch", "delete"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        upload_id: str | None = kwargs.get("upload_id")
        method = str(request.method).upper()
        try:
            try:
                request.get_host()  # a Host outside ALLOWED_HOSTS: refuse before any work
                override = request.headers.get(th.METHOD_OVERRIDE, "").strip().upper()
                if method == "POST" and override:
                    method = override
                allowed = UPLOAD_METHODS if upload_id is not None else COLLECTION_METHODS
                if method not in allowed:
                    raise MethodNotAllowed(f"{method} is not allowed here.", allow=list(allowed))
                if method != "OPTIONS" and request.headers.get(th.TUS_RESUMABLE) != th.VERSION:
                    raise th.UnsupportedVersion()
                if upload_id is not None and not is_upload_id(upload_id):
                    raise exc.UploadNotFound()
                self.check_permissions(request)
                if method not in ("OPTIONS", "HEAD"):
                    self.enforce_csrf(request)
                response: HttpResponse = getattr(self, method.lower())(request, upload_id)
            except SuspiciousOperation as e:
                logger.warning("chunky_redis: suspicious request refused: %s", e)
                raise exc.ChunkyError(str(e), code="suspicious_request") from e
        except exc.ChunkyError as e:
            drain(request)
            response = error_response(e)
        except Exception:
            response = error_response(report_bug(request, type(self)))
        if method != "OPTIONS":
            response[th.TUS_RESUMABLE] = th.VERSION
        return response

    # -- handlers --------------------------------------------------------------
    def options(self, request: HttpRequest, upload_id: str | None) -> HttpResponse:
        headers = {
            th.TUS_VERSION: th.VERSION,
            th.TUS_EXTENSION: ",".join(self._extensions()),
            th.TUS_CHECKSUM_ALGORITHM: ",".join(th.CHECKSUM_ALGORITHMS),
            "Allow": ", ".join(UPLOAD_METHODS if upload_id else COLLECTION_METHODS),
        }
        max_bytes = self.get_max_bytes(request)
        if max_bytes is not None:
            headers[th.TUS_MAX_SIZE] = str(max_bytes)
        return no_content(headers=headers)

    def _extensions(self) -> tuple[str, ...]:
        if self.service.storage.can_concatenate:
            return th.EXTENSIONS
        return tuple(e for e in th.EXTENSIONS if not e.startswith("concatenation"))

    def post(self, request: HttpRequest, upload_id: None) -> HttpResponse:
        concat, part_ids = th.parse_concat(request.headers.get(th.UPLOAD_CONCAT))
        if concat and not self.service.storage.can_concatenate:
            # Refused before anything exists: a part could never be joined with this storage.
            raise th.BadHeader(th.UPLOAD_CONCAT, "concatenation is not offered by this server.")
        if concat == "final":
            return self._concatenate(request, part_ids)
        length = th.integer(request.headers.get(th.UPLOAD_LENGTH), th.UPLOAD_LENGTH)
        defer = request.headers.get(th.UPLOAD_DEFER_LENGTH)
        if defer is not None and defer.strip() != "1":
            raise th.BadHeader(th.UPLOAD_DEFER_LENGTH, "the only value allowed is 1.")
        if (length is None) == (defer is None):
            raise th.BadHeader(
                th.UPLOAD_LENGTH, "send either Upload-Length or Upload-Defer-Length: 1."
            )
        metadata = th.parse_metadata(request.headers.get(th.UPLOAD_METADATA))
        body_length = self._body_length(request)
        checksum = self._body_checks(request, body_length)
        if length is not None and body_length > length:
            raise exc.LengthMismatch(
                length, body_length, f"The body has {body_length} bytes; the upload {length}."
            )
        self.validate(request)
        owner = self.get_owner(request)
        upload = self.service.create(
            owner=owner,
            length=length,
            max_bytes=self.get_max_bytes(request),
            quota=self.get_quota(request),
            filename=clean_filename(metadata.get("filename") or metadata.get("name") or ""),
            extra=self._extra(request, metadata, concat),
        )
        location = self._location(request, upload)
        try:
            if body_length:
                upload = self._append(request, owner, upload.upload_id, 0, body_length, checksum)
            else:
                upload = self._complete_if_full(owner, upload)
        except exc.ChunkyError as e:
            # The upload exists: say where, so that the client can resume it.
            drain(request)
            return th.with_headers(error_response(e), {"Location": location})
        return no_content(HTTPStatus.CREATED, {"Location": location, **self._progress(upload)})

    def _concatenate(self, request: HttpRequest, part_ids: list[str]) -> HttpResponse:
        """A final upload: the partial uploads named, in order (concatenation extension)."""
        for header in (th.UPLOAD_LENGTH, th.UPLOAD_DEFER_LENGTH):
            if header in request.headers:
                raise th.BadHeader(header, "a final upload's length is its parts'.")
        if self._body_length(request):
            raise th.BadHeader(th.UPLOAD_CONCAT, "a final upload carries no body.")
        metadata = th.parse_metadata(request.headers.get(th.UPLOAD_METADATA))
        self.validate(request)
        concat = request.headers.get(th.UPLOAD_CONCAT, "").strip()  # HEAD gives it back as sent
        upload = self.service.concatenate(
            owner=self.get_owner(request),
            part_ids=part_ids,
            max_bytes=self.get_max_bytes(request),
            filename=clean_filename(metadata.get("filename") or metadata.get("name") or ""),
            extra=self._extra(request, metadata, concat),
            unfinished_ok=True,  # concatenation-unfinished
        )
        headers = {"Location": self._location(request, upload)}
        if upload.status != UPLOADING:
            headers.update(self._progress(upload))
        return no_content(HTTPStatus.CREATED, headers)

    def head(self, request: HttpRequest, upload_id: str) -> HttpResponse:
        owner = self.get_owner(request)
        upload = self.service.status(owner=owner, upload_id=upload_id)
        if upload.status == "failed":
            raise exc.UploadFailed(upload.reason, upload.status)
        upload = self._complete_if_full(owner, upload, quiet=True)
        headers = self._progress(upload)
        if upload.extra.get(CONCAT_PARTS) and upload.status == UPLOADING:
            del headers[th.UPLOAD_OFFSET]  # a concatenation waiting for its parts has none yet
        if upload.length_known:
            headers[th.UPLOAD_LENGTH] = str(upload.size)
        else:
            headers[th.UPLOAD_DEFER_LENGTH] = "1"
        metadata = upload.extra.get("tus_metadata")
        if metadata:
            headers[th.UPLOAD_METADATA] = th.format_metadata(metadata)
        if upload.extra.get(TUS_CONCAT):
            headers[th.UPLOAD_CONCAT] = upload.extra[TUS_CONCAT]
        headers[CACHE_CONTROL] = "no-store"
        return no_content(HTTPStatus.OK, headers)

    def patch(self, request: HttpRequest, upload_id: str) -> HttpResponse:
        offset = th.integer(request.headers.get(th.UPLOAD_OFFSET), th.UPLOAD_OFFSET)
        if offset is None:
            raise th.BadHeader(th.UPLOAD_OFFSET, "is required.")
        if request.content_type != th.OFFSET_CONTENT_TYPE:
            raise th.WrongContentType()
        length = th.integer(request.headers.get(th.UPLOAD_LENGTH), th.UPLOAD_LENGTH)
        body_length = self._body_length(request)
        checksum = self._body_checks(request, body_length)
        self.validate(request)
        owner, service = self.get_owner(request), self.service
        if length is not None:
            # A refused PATCH changes nothing, its Upload-Length neither: check what the
            # append will check before the length is fixed.
            current = service.status(owner=owner, upload_id=upload_id)
            if offset != current.offset and current.status == UPLOADING:
                raise exc.OffsetMismatch(current.offset, offset)
            if offset + body_length > length:
                raise exc.LengthMismatch(
                    length, offset + body_length, f"The body ends past the length, {length}."
                )
            service.declare_length(
                owner=owner,
                upload_id=upload_id,
                length=length,
                max_bytes=self.get_max_bytes(request),
                quota=self.get_quota(request),
            )
        try:
            upload = self._append(request, owner, upload_id, offset, body_length, checksum)
        except exc.AlreadyComplete:
            upload = service.status(owner=owner, upload_id=upload_id)
            if upload.extra.get(CONCAT_PARTS):  # concatenation: a final upload takes no PATCH
                raise
            if offset != upload.offset:
                raise exc.OffsetMismatch(upload.offset, offset) from None
            if body_length:
                raise
        return no_content(headers=self._progress(upload))

    def delete(self, request: HttpRequest, upload_id: str) -> HttpResponse:
        self.service.terminate(owner=self.get_owner(request), upload_id=upload_id)
        return no_content()

    # -- plumbing --------------------------------------------------------------
    def _body_length(self, request: HttpRequest) -> int:
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            raise LengthRequired()
        return th.integer(request.META.get("CONTENT_LENGTH") or "0", "Content-Length") or 0

    def _body_checks(self, request: HttpRequest, body_length: int) -> ChunkDigest | None:
        """What a body must carry, checked before anything is created or locked."""
        if body_length and request.content_type != th.OFFSET_CONTENT_TYPE:
            raise th.WrongContentType()
        return th.parse_checksum(request.headers.get(th.UPLOAD_CHECKSUM))

    def _location(self, request: HttpRequest, upload: Upload) -> str:
        return request.build_absolute_uri(request.path.rstrip("/") + "/" + upload.upload_id)

    def _extra(self, request: HttpRequest, metadata: dict[str, str], concat: str) -> dict[str, Any]:
        """Kept with the upload and given to the upload_completed receivers."""
        extra = {**self.get_extra_attrs(request), "tus_metadata": metadata}
        if concat:
            extra[TUS_CONCAT] = concat
        filetype = metadata.get("filetype") or metadata.get("type")
        if filetype:
            extra["filetype"] = filetype
        return extra

    def _append(
        self,
        request: HttpRequest,
        owner: str,
        upload_id: str,
        offset: int,
        body_length: int,
        checksum: ChunkDigest | None,
    ) -> Upload:
        """Stream the body at ``offset``; complete the upload when it reaches its length.

        A body cut short (the client went away) is recorded as far as it came, as tus
        asks: the client learns the offset with HEAD and sends the rest.
        """
        session = self.service.start_append(
            owner=owner,
            upload_id=upload_id,
            offset=offset,
            length=body_length,
            max_bytes=self.get_max_bytes(request),
            length_unknown_ok=True,
            chunk_digest=checksum,
            keep_partial=True,
        )
        try:
            stream_prefix(request, session, body_length, conf.BLOCK_SIZE)
            upload = session.finish()
        except BaseException:
            session.abort()
            raise
        return self._complete_if_full(owner, upload)

    def _complete_if_full(self, owner: str, upload: Upload, *, quiet: bool = False) -> Upload:
        """Hand a full upload to post-processing (once: the core moves its status under a lock).

        HEAD does it too (``quiet``: errors are logged, the facts answered), for an upload
        whose last PATCH was recorded but whose hand-off failed.
        """
        if upload.status != UPLOADING:
            return upload
        if upload.extra.get(CONCAT_PARTS):  # complete once its parts are
            service = self.service
            return self._quietly(  # type: ignore[no-any-return]
                upload, service.finish_concatenation, owner=owner, upload_id=upload.upload_id
            )
        if not upload.length_known or upload.offset < upload.size:
            return upload
        if upload.extra.get(TUS_CONCAT) == "partial":
            self._finish_concatenations(owner, upload.upload_id)
            return upload  # a part is never finalized itself: its concatenation is
        try:
            return self.service.complete(owner=owner, upload_id=upload.upload_id, checksum=None)
        except exc.ChunkyError as e:
            if not quiet:
                raise
            logger.warning("chunky_redis: tus upload %s not handed on: %s", upload.upload_id, e)
            return upload

    def _finish_concatenations(self, owner: str, part_id: str) -> None:
        """The concatenations waiting for this part, now that it is complete (read afresh:
        one named just now is in the record, not in what this request loaded)."""
        service = self.service
        part = self._quietly(None, service.status, owner=owner, upload_id=part_id)
        for final_id in part.extra.get(CONCAT_FINALS, []) if part else []:
            self._quietly(None, service.finish_concatenation, owner=owner, upload_id=final_id)

    def _quietly(self, default: Any, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return call(*args, **kwargs)
        except exc.ChunkyError as e:
            logger.warning("chunky_redis: tus concatenation not handed on: %s", e)
            return default

    def _progress(self, upload: Upload) -> dict[str, str]:
        headers = {th.UPLOAD_OFFSET: str(upload.offset)}
        if upload.status == UPLOADING and upload.expires:
            headers[th.UPLOAD_EXPIRES] = th.expires(upload.expires)
        return headers


@csrf_exempt  # a JSON 404 for every method, with the tus version as every tus answer
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    drain(request)
    response = error_response(exc.UploadNotFound("No such endpoint."))
    response[th.TUS_RESUMABLE] = th.VERSION
    return response
