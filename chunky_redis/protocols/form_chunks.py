"""A chunk that arrives in a multipart form beside the fields that say where it goes.

django-chunked-upload's clients name the upload in a form field (``upload_id``),
not in the URL, so the upload is only known once the form has been read up to
that field. Django's parser reads the fields in the order they were sent:

- when ``upload_id`` (or no field naming an upload at all) comes before the
  file part, as jQuery-File-Upload, ``requests`` and browsers' ``FormData`` send
  it, the chunk session opens as the file part begins and the bytes stream
  straight into it, never held whole in memory;
- when the file part comes first, its bytes wait in a temporary file (in memory
  up to one block, on disk beyond) until the rest of the form says where they go.

Either way the session opens before a byte reaches the chunk storage, so every
check on the request (owner, offset, range, size) runs first.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import IO, Any, cast

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, QueryDict, UnreadablePostError
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.utils.datastructures import MultiValueDict

from ..core.errors import MissingChunk
from ..core.session import ChunkSession
from .bodies import MULTIPART, BadBody, _StreamedFile

UPLOAD_ID_FIELD = "upload_id"

# Opens the chunk session for the upload named by the form (None: a new upload);
# ``length`` is the chunk's length when it is known before streaming.
SessionOpener = Callable[[str | None, int | None], ChunkSession]


class FormChunk:
    """What ``receive()`` read: the open session holding the chunk, the form and the filename."""

    def __init__(self, session: ChunkSession, fields: QueryDict, filename: str):
        self.session = session
        self.fields = fields
        self.filename = filename


def upload_id_in(fields: QueryDict) -> str | None:
    """The form's upload id; None for a new upload. Two different ones are refused."""
    values = {value for value in fields.getlist(UPLOAD_ID_FIELD) if value}
    if len(values) > 1:
        raise BadBody(f"The form names more than one '{UPLOAD_ID_FIELD}'.")
    return values.pop() if values else None


def receive(
    request: HttpRequest, open_session: SessionOpener, *, field_name: str, block_size: int
) -> FormChunk:
    """Read the form, writing its file part into the session ``open_session`` opens.

    On any error the session, if one was opened, is aborted: nothing recorded changes.
    """
    if (request.content_type or "") != MULTIPART:
        raise MissingChunk(f"Send the chunk as multipart/form-data, in the field '{field_name}'.")
    receiver = _Receiver(request, open_session, field_name, block_size)
    try:
        if hasattr(request, "_files"):
            # Something (a middleware) has already parsed the form with Django's own
            # handlers: the chunk is in an uploaded file; copy it from there.
            fields, files = cast(QueryDict, request.POST), request.FILES
            chunk = files.get(field_name)
            if chunk is not None:
                receiver.take(chunk, fields)
        else:
            fields, files = _parse(request, receiver)
            _set_form(request, fields, files)
        if not receiver.found:
            raise MissingChunk(f"No file was found in the multipart field '{field_name}'.")
        session = receiver.settle(fields)
        return FormChunk(session, fields, receiver.filename)
    except BaseException:
        receiver.abort()
        raise


def _set_form(request: HttpRequest, fields: QueryDict, files: MultiValueDict[str, Any]) -> None:
    """What ``request.POST`` and ``request.FILES`` answer from now on, as Django itself sets them."""
    setattr(request, "_post", fields)  # noqa: B010 (private attributes of HttpRequest)
    setattr(request, "_files", files)  # noqa: B010


def _parse(request: HttpRequest, receiver: _Receiver) -> tuple[QueryDict, MultiValueDict[str, Any]]:
    parser = MultiPartParser(request.META, request, [receiver], request.encoding)
    receiver.parser = parser
    try:
        return parser.parse()
    except (MultiPartParserError, UnreadablePostError, RequestDataTooBig, SuspiciousOperation) as e:
        raise BadBody(f"The multipart body could not be parsed: {e}") from e


class _Receiver(FileUploadHandler):
    """Sends the one file part to a chunk session, or to a spool until the form names the upload."""

    def __init__(
        self, request: HttpRequest, open_session: SessionOpener, field_name: str, block_size: int
    ):
        super().__init__(request)
        self.open_session = open_session
        self.target_field = field_name
        self.chunk_size = block_size
        self.parser: MultiPartParser | None = None
        self.session: ChunkSession | None = None
        self.spool: IO[bytes] | None = None
        self.found = False
        self.filename = ""
        self._active = False

    # -- the parser's calls -------------------------------------------------------
    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, file_name, *args, **kwargs)
        if field_name != self.target_field:
            raise SkipFile()
        if self.found:
            raise BadBody(f"The multipart field '{field_name}' carries more than one file.")
        self.found, self._active, self.filename = True, True, file_name or ""
        before = self._fields_so_far()
        upload_id = upload_id_in(before) if before is not None else None
        if upload_id is not None and before is not None:
            self._open(upload_id, None, before)
        else:
            # A new upload, or an upload_id still to come: wait for the end of the form.
            self.spool = tempfile.SpooledTemporaryFile(max_size=self.chunk_size)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if self._active:
            if self.session is not None:
                self.session.write(raw_data)
            else:
                assert self.spool is not None
                self.spool.write(raw_data)
        return None

    def file_complete(self, file_size: int) -> UploadedFile[Any] | None:
        if not self._active:
            return None
        self._active = False
        return _StreamedFile(file=None, name=self.filename, size=file_size)

    # -- after the form was read ----------------------------------------------------
    def take(self, chunk: UploadedFile[Any], fields: QueryDict) -> None:
        """The chunk as an uploaded file Django's own handlers made."""
        self.found, self.filename = True, chunk.name or ""
        self.spool = chunk.file

    def settle(self, fields: QueryDict) -> ChunkSession:
        """The session holding the chunk, once the whole form is known."""
        upload_id = upload_id_in(
            fields
        )  # refuses an upload_id after the file unlike the one before
        if self.session is not None:
            return self.session
        assert self.spool is not None
        length = self.spool.seek(0, 2)
        self.spool.seek(0)
        session = self._open(upload_id, length, fields)
        while data := self.spool.read(self.chunk_size):
            session.write(data)
        return session

    def abort(self) -> None:
        if self.session is not None:
            self.session.abort()
            self.session = None

    # -- helpers -----------------------------------------------------------------
    def _open(self, upload_id: str | None, length: int | None, fields: QueryDict) -> ChunkSession:
        # The view's hooks (validate(), get_max_bytes()...) see the fields read so far.
        assert self.request is not None
        files = getattr(self.request, "_files", None)
        _set_form(self.request, fields, files if files is not None else MultiValueDict())
        self.session = self.open_session(upload_id, length)
        return self.session

    def _fields_so_far(self) -> QueryDict | None:
        # MultiPartParser keeps the fields it has read in ``_post`` (Django 4.2 to 6.x); should
        # that ever change, the chunk takes the spool's way, which is slower but as correct.
        post = getattr(self.parser, "_post", None)
        return post.copy() if isinstance(post, QueryDict) else None
