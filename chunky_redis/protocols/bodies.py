"""Reading a chunk out of a request body, streaming it into a ChunkSession.

Three body formats are accepted:
- multipart/form-data, the file in the view's ``field_name`` (the part's
  filename, or an optional ``filename`` field, names it);
- a raw body (application/octet-stream or anything else), named by
  Content-Disposition or ``?filename=``;
- django-chunky-upload 1.0.3's JSON body ``{"file": [byte values], "filename": ...}``,
  parsed as JSON and never evaluated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, QueryDict, UnreadablePostError
from django.http.multipartparser import MultiPartParser, MultiPartParserError

from ..core.errors import ChunkyError, MissingChunk
from ..core.http import CONTENT_DISPOSITION, clean_filename, filename_from_content_disposition
from ..core.session import ChunkSession
from .socket_body import block_reader

MULTIPART = "multipart/form-data"
JSON = "application/json"


class BadBody(ChunkyError):
    default_detail = "The request body could not be read."
    default_code = "bad_body"


@dataclass
class Body:
    """What a request says about its chunk before the chunk is written."""

    kind: str  # "multipart", "json" or "raw"
    length: int | None  # the chunk's length when known before streaming
    filename: str = ""
    data: bytes | None = None  # the decoded chunk, for the JSON format only
    fields: dict[str, str] = field(default_factory=dict)


def inspect(request: HttpRequest, *, max_json_body: int) -> Body:
    content_type = request.content_type or ""
    if content_type == MULTIPART:
        return Body("multipart", None)
    if content_type == JSON:
        return _parse_json_chunk(request, max_json_body)
    length = _content_length(request)
    filename = filename_from_content_disposition(request.headers.get(CONTENT_DISPOSITION, ""))
    return Body("raw", length, filename or clean_filename(request.GET.get("filename", "")))


def stream(
    request: HttpRequest, body: Body, session: ChunkSession, *, field_name: str, block_size: int
) -> Body:
    """Write the chunk into ``session``; returns the body with filename and form fields filled in."""
    if body.kind == "json":
        assert body.data is not None
        session.write(body.data)
        return body
    if body.kind == "raw":
        remaining = body.length or 0
        read = block_reader(request)
        while remaining > 0:
            try:
                data = read(min(block_size, remaining))
            except (OSError, UnreadablePostError) as e:
                raise BadBody(f"The connection broke while reading the chunk: {e}") from e
            if not data:
                break  # a short body: finish() reports the length mismatch
            session.write(data)
            remaining -= len(data)
        return body
    return _stream_multipart(request, body, session, field_name=field_name, block_size=block_size)


def _stream_multipart(
    request: HttpRequest, body: Body, session: ChunkSession, *, field_name: str, block_size: int
) -> Body:
    handler = _StreamingHandler(session, field_name, block_size)
    try:
        if request.method == "POST" and hasattr(request, "_files"):
            # The CSRF check already parsed the body through our handler.
            post: QueryDict = request.POST
        else:
            request.upload_handlers = [handler]
            if request.method == "POST":
                post = request.POST
            else:
                post, _files = MultiPartParser(
                    request.META, request, request.upload_handlers, request.encoding
                ).parse()
    except (MultiPartParserError, UnreadablePostError, RequestDataTooBig, SuspiciousOperation) as e:
        raise BadBody(f"The multipart body could not be parsed: {e}") from e
    handler = next(
        (h for h in request.upload_handlers if isinstance(h, _StreamingHandler)), handler
    )
    if not handler.found:
        raise MissingChunk(f"No file was found in the multipart field '{field_name}'.")
    # A parsed body's every key has a value, so get() returns a str, never its None.
    fields = {key: cast(str, post.get(key)) for key in post}
    filename = clean_filename(fields.get("filename") or handler.filename)
    return Body("multipart", handler.size, filename, None, fields)


def install_streaming_handler(
    request: HttpRequest, session: ChunkSession, *, field_name: str, block_size: int
) -> None:
    """Make a later ``request.POST`` access (the CSRF check's) stream the file into ``session``."""
    if (request.content_type or "") == MULTIPART:
        request.upload_handlers = [_StreamingHandler(session, field_name, block_size)]


class _StreamingHandler(FileUploadHandler):
    """Sends the one file part straight to the chunk session; nothing is buffered or spooled."""

    def __init__(self, session: ChunkSession, target_field: str, block_size: int):
        super().__init__()
        self.session = session
        self.target_field = target_field
        self.chunk_size = block_size
        self.found = False
        self.filename = ""
        self.size = 0
        self._active = False

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        if field_name != self.target_field:
            raise SkipFile()
        if self.found:
            raise BadBody(f"The multipart field '{field_name}' carries more than one file.")
        self.found, self._active, self.filename = True, True, file_name or ""

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if self._active:
            self.session.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> _UploadedBytes | None:
        if not self._active:
            return None
        self._active = False
        self.size = file_size
        return _StreamedFile(file=None, name=self.filename, size=file_size)


if TYPE_CHECKING:
    _UploadedBytes = UploadedFile[bytes]
else:
    _UploadedBytes = UploadedFile  # generic in django-stubs only, not at run time


class _StreamedFile(_UploadedBytes):
    """Stands in request.FILES for the part already written to the chunk session.

    Django closes every file of a request when the parse fails (two file parts,
    too many fields) and when the request ends; this one has nothing to close,
    and UploadedFile.close() would fail on its missing file object.
    """

    def close(self) -> None:
        pass


def _content_length(request: HttpRequest) -> int:
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw)
    except ValueError:
        raise BadBody("Content-Length is not a number.") from None
    if length < 0:
        raise BadBody("Content-Length is negative.")
    return length


def _parse_json_chunk(request: HttpRequest, max_json_body: int) -> Body:
    length = _content_length(request)
    if length > max_json_body:
        raise BadBody(
            f"A JSON chunk may have at most {max_json_body} bytes; send large chunks as a raw body.",
            code="json_too_large",
        )
    try:
        raw = request.read(length)
    except (OSError, UnreadablePostError) as e:
        raise BadBody(f"The connection broke while reading the chunk: {e}") from e
    payload = _load_json(raw or b"null")
    if not isinstance(payload, dict) or "file" not in payload:
        raise MissingChunk("The JSON body has no 'file' member.")
    values = payload["file"]
    if not isinstance(values, list) or not all(type(v) is int and 0 <= v <= 255 for v in values):
        raise BadBody(
            "'file' must be a list of byte values (integers 0-255).", code="bad_json_chunk"
        )
    filename = payload.get("filename", "")
    if not isinstance(filename, str):
        raise BadBody("'filename' must be a string.", code="bad_json_chunk")
    fields = {k: v for k, v in payload.items() if k not in ("file",) and isinstance(v, str)}
    return Body("json", len(values), clean_filename(filename), bytes(values), fields)


def _load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadBody(f"The body is not valid JSON: {e}") from e
    except RecursionError as e:
        # json's scanner recurses once per nesting level: "[[[[...]]]]" a few
        # thousand deep exhausts the stack. The interpreter is fine afterwards.
        raise BadBody("The JSON body is nested too deeply.") from e


def form_fields(request: HttpRequest) -> dict[str, str]:
    """Small form or JSON fields of a completion request (never a file)."""
    if (request.content_type or "") == JSON:
        length = _content_length(request)
        if length > 64 * 1024:
            raise BadBody("A completion body may have at most 64 KiB.")
        try:
            raw = request.read(length)
        except (OSError, UnreadablePostError) as e:
            raise BadBody(f"The connection broke while reading the body: {e}") from e
        payload = _load_json(raw or b"{}")
        if not isinstance(payload, dict):
            raise BadBody("The JSON body must be an object.")
        return {k: v for k, v in payload.items() if isinstance(v, str)}
    if request.method == "POST":
        try:
            post: QueryDict = request.POST
        except (MultiPartParserError, UnreadablePostError, SuspiciousOperation) as e:
            raise BadBody(f"The form body could not be parsed: {e}") from e
        return {key: cast(str, post.get(key)) for key in post}  # as in _stream_multipart
    return {}


def stream_prefix(request: HttpRequest, session: ChunkSession, length: int, block_size: int) -> int:
    """Write up to ``length`` bytes of a raw body into ``session``; returns how many came.

    A body cut short (the client went away) stops the loop without an error: with
    ``start_append(keep_partial=True)`` the session records the bytes that arrived.
    """
    remaining = length
    read = block_reader(request)
    while remaining > 0:
        try:
            data = read(min(block_size, remaining))
        except (OSError, UnreadablePostError):
            break
        if not data:
            break
        session.write(data)
        remaining -= len(data)
    return length - remaining
