"""Reading a raw chunk body in blocks, straight from the client's socket where the server allows it.

gunicorn's ``wsgi.input`` passes a body through the buffers of three readers (the socket's, the
length reader's and the body's), and each byte is copied three or four times on its way. On a
2-core machine those copies cost as much as a third of the md5 that the chunk needs anyway. Under
gunicorn, for a body of known length that nothing has started to read, ``block_reader()`` receives
each block from the socket itself: a block that arrives in one ``recv`` is the very object that is
written and hashed, and one that arrives in pieces is joined once. Reading 256 MiB in 1 MiB
blocks takes some 0.4 of the CPU that ``wsgi.input`` takes. As with gunicorn's reader, a block's
memory is what has arrived of it: a client that trickles its body holds no empty block.

It keeps gunicorn's own state true at every step, so that nothing is lost or misplaced when a
request stops reading half-way (an error, a lost lock):

- the bytes gunicorn had already received past the headers are taken from its buffer only as
  each block needs them, and what lies beyond the body (a pipelined next request) is put back;
- the length reader's count of the body's bytes still unread drops by exactly what each block
  took, so that after the response gunicorn discards the rest of the body and finds the next
  request where it begins;
- an error on the socket marks the body as failed, as gunicorn's reader does, so that the
  connection is closed rather than reused.

Anything else (another server, an older gunicorn without these names, a chunked body, a body
Django has begun to read) is read with ``request.read``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest

BlockReader = Callable[[int], bytes]


def block_reader(request: HttpRequest) -> BlockReader:
    """A function returning up to ``size`` more bytes of the body (b"" at its end)."""
    direct = _gunicorn_body(request)
    return direct.read if direct is not None else request.read


def _gunicorn_body(request: HttpRequest) -> _GunicornBody | None:
    body_module = sys.modules.get("gunicorn.http.body")
    if body_module is None:
        return None  # not served by gunicorn (its modules are imported before any request)
    if getattr(request, "_read_started", True):
        return None  # Django has read from the stream (request.body too sets this)
    wsgi_input: Any = request.META.get("wsgi.input")
    if type(wsgi_input) is not getattr(body_module, "Body", None):
        return None  # not gunicorn's, or a subclass that may do its own thing with the bytes
    reader = wsgi_input.reader
    if type(reader) is not getattr(body_module, "LengthReader", None):
        return None  # a chunked body, or one read to the end of the connection
    unreader = reader.unreader
    sock = getattr(unreader, "sock", None)
    if not (
        hasattr(sock, "recv")
        and hasattr(unreader, "take_buffered")
        and hasattr(unreader, "unread")
        and wsgi_input.buf.tell() == 0  # the body's own buffer holds nothing read ahead
    ):
        return None  # an older gunicorn, or a body that does not come from a socket
    return _GunicornBody(wsgi_input, reader, unreader, sock)


class _GunicornBody:
    def __init__(self, body: Any, reader: Any, unreader: Any, sock: Any):
        self.body = body
        self.reader = reader
        self.unreader = unreader
        self.recv = sock.recv

    def read(self, size: int) -> bytes:
        reader = self.reader
        size = min(size, reader.length)
        if size <= 0:
            return b""
        pieces: list[bytes] = []
        held = self._take_buffered(size)
        if held:
            pieces.append(held)
        got = len(held)
        try:
            while got < size:
                piece = self.recv(size - got)
                if not piece:
                    break  # the client went away: a short body
                reader.length -= len(piece)
                pieces.append(piece)
                got += len(piece)
        except BaseException:
            # Where the next request starts is unknown now: gunicorn must not reuse the connection.
            self.body.failed = True
            raise
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _take_buffered(self, size: int) -> bytes:
        """Up to ``size`` bytes of what gunicorn already received of the body; the rest goes back."""
        held: bytes = self.unreader.take_buffered()
        if len(held) > size:
            self.unreader.unread(held[size:])
            held = held[:size]
        self.reader.length -= len(held)
        return held
