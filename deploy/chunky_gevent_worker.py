"""gunicorn's gevent worker, changed for restarts: nothing holds a shutdown for graceful_timeout.

On SIGTERM gunicorn's gevent worker stops accepting and waits, up to ``graceful_timeout``, until
no connection is open, and a keep-alive connection waiting for its next request counts as open.
So a client (or nginx's upstream pool) that keeps a connection open delays every restart by the
whole 60 s, and an orchestrator with a shorter grace period kills the worker with the chunks still
in flight. Here connections between requests are shut down at once, as the threaded worker does;
requests in progress still finish, and their answer says ``Connection: close`` (gunicorn decides
keep-alive when a request starts, so without this a request in progress at SIGTERM went back to
being an idle connection that held the restart for the whole 60 s).

A stop signal that arrives while the worker boots is held until the worker's handlers are in place,
instead of being lost (then the master waited the whole 60 s for that worker).

This module lives outside ``chunky_site`` so that gunicorn's master, which imports it to find the
worker class, loads no more than gevent and gunicorn: each worker monkey-patches before Django,
Celery, redis-py or botocore are imported. (Inside the package, the master imported all of them
through ``chunky_site/__init__``, and gevent warned at every start.) Should something import them
in the master all the same (``preload_app``, a host's own configuration), the worker still points
modules that hold the unpatched ``ssl.SSLContext`` at the patched class after patching: every TLS
context they built would recurse (RecursionError) once web workers talk to S3.
"""

from __future__ import annotations

import signal
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


# The signals that stop a worker. Until the worker installs its own handlers, one that arrives goes
# to the master's handler, inherited through fork, which queues it in the worker's copy of the
# master's queue, where nothing reads it: the master then waits graceful_timeout for a worker that
# never heard its SIGTERM, and kills it.
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


class GeventWorker(_GeventWorker):
    def init_process(self):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # held until init_signals()
        super().init_process()

    def init_signals(self):
        super().init_signals()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # one held meanwhile arrives now

    def patch(self):
        super().patch()
        repoint_ssl_context()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # open connection -> the request it is serving, or None between requests
        self._connections: dict[object, object | None] = {}

    def handle(self, listener, client, addr):
        self._connections[client] = None
        try:
            super().handle(listener, client, addr)
        finally:
            self._connections.pop(client, None)

    def handle_request(self, listener_name, req, sock, addr):
        self._connections[sock] = req
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            if sock in self._connections:
                self._connections[sock] = None

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        gevent.spawn(self._close_connections)  # not inside the signal handler

    def _close_connections(self) -> None:
        for conn, req in list(self._connections.items()):
            if req is not None:
                req.must_close = True  # its answer says Connection: close
                continue
            # The kernel socket's shutdown, so that its greenlet reads EOF and ends quietly; gevent's
            # own shutdown() wakes it with EBADF instead, which gunicorn logs as an error.
            try:
                getattr(conn, "_sock", conn).shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
