"""gunicorn's gevent worker, changed in one way: idle keep-alive connections go at shutdown.

On SIGTERM gunicorn's gevent worker stops accepting and waits, up to ``graceful_timeout``, until
no connection is open, and a keep-alive connection waiting for its next request counts as open.
So a client (or nginx's upstream pool) that keeps a connection open delays every restart by the
whole 60 s, and an orchestrator with a shorter grace period kills the worker with the chunks still
in flight. Here connections between requests are shut down at once, as the threaded worker does;
requests in progress still finish (their response says ``Connection: close``).

And one repair after the monkey-patching: modules the master imported before it (urllib3 and
botocore, through the Django settings) hold the unpatched ``ssl.SSLContext``, and every TLS
context they build would recurse (RecursionError) once web workers talk to S3
(``CHUNKY_REDIS_CHUNK_STORAGE = "s3"``); they are pointed at the patched class.
"""

from __future__ import annotations

import socket
import ssl
import sys

import gevent
from gevent import monkey
from gunicorn.workers.ggevent import GeventWorker as _GeventWorker


def repoint_ssl_context() -> list[str]:
    """Point modules that imported the unpatched SSLContext at the patched one; their names."""
    original = monkey.get_original("ssl", "SSLContext")
    repointed = []
    for name, module in list(sys.modules.items()):
        try:
            held = module is not ssl and getattr(module, "SSLContext", None) is original
        except Exception:  # a lazy module whose __getattr__ raises: it holds nothing of ours
            continue
        if held:
            module.SSLContext = ssl.SSLContext
            repointed.append(name)
    return repointed


class GeventWorker(_GeventWorker):
    def patch(self):
        super().patch()
        repoint_ssl_context()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._connections: dict[object, bool] = {}  # open connection -> inside a request

    def handle(self, listener, client, addr):
        self._connections[client] = False
        try:
            super().handle(listener, client, addr)
        finally:
            self._connections.pop(client, None)

    def handle_request(self, listener_name, req, sock, addr):
        self._connections[sock] = True
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            if sock in self._connections:
                self._connections[sock] = False

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        gevent.spawn(self._close_idle)  # not inside the signal handler

    def _close_idle(self) -> None:
        for conn, busy in list(self._connections.items()):
            if not busy:
                try:
                    conn.shutdown(socket.SHUT_RDWR)  # its greenlet reads EOF and ends
                except OSError:
                    pass
