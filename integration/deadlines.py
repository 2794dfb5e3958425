"""One wall-clock deadline for a whole HTTP exchange (headers and body), for `requests`.

requests/urllib3 timeouts apply to each socket operation: a server that drips one byte
per second never trips a 12 s read timeout and holds the calling thread forever. Here
every receive on the socket waits at most until the deadline of the exchange in progress
on this thread (and at most `per_read` seconds), so the exchange ends by the deadline
whatever the server does.

    adapter = DeadlineAdapter(per_read=12.0)          # mounted on a Session
    with exchange_deadline(time.monotonic() + 25):    # around the request AND the body read
        response = session.post(url, stream=True); body = response.content
"""
from __future__ import annotations

import io
import math
import socket
import threading
import time
from contextlib import contextmanager

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


@contextmanager
def exchange_deadline(deadline: float):
    """Receives on this thread end (socket.timeout) at `deadline` (time.monotonic())."""
    previous = getattr(_local, "deadline", None)
    _local.deadline = deadline
    try:
        yield
    finally:
        _local.deadline = previous


class _DeadlineSocket:
    """Wraps a connected socket: each receive gets the time left before the deadline."""

    def __init__(self, sock, per_read: float):
        self._sock, self._per_read = sock, per_read

    def __getattr__(self, name):  # everything else (send, fileno, settimeout, close) is the socket's
        return getattr(self._sock, name)

    def _arm(self) -> None:
        deadline = getattr(_local, "deadline", None)
        left = math.inf if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the exchange's deadline has passed")
        self._sock.settimeout(min(left, self._per_read))

    def recv(self, *args):
        self._arm()
        return self._sock.recv(*args)

    def recv_into(self, *args):
        self._arm()
        return self._sock.recv_into(*args)

    def makefile(self, mode="r", buffering=None, **_kwargs):
        # http.client reads the status line, headers and body through this file: build it
        # over this wrapper (not the bare socket) so those reads are armed too.
        if "b" not in mode or "w" in mode:
            return self._sock.makefile(mode, buffering)
        self._sock._io_refs += 1  # as socket.makefile does: the socket closes after its files
        raw = socket.SocketIO(self, "rb")
        return io.BufferedReader(raw, buffering if buffering and buffering > 0 else io.DEFAULT_BUFFER_SIZE)

    def _decref_socketios(self):
        self._sock._decref_socketios()


def _connection_class(base):
    class Connection(base):
        per_read: float = 60.0

        def connect(self):
            super().connect()
            self.sock = _DeadlineSocket(self.sock, self.per_read)

    return Connection


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections honour `exchange_deadline` on every receive."""

    def __init__(self, *, per_read: float, **kwargs):
        self._per_read = per_read
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        per_read = self._per_read
        http_conn = type("DeadlineHTTPConnection", (_connection_class(HTTPConnection),), {"per_read": per_read})
        https_conn = type("DeadlineHTTPSConnection", (_connection_class(HTTPSConnection),), {"per_read": per_read})
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("DeadlineHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("DeadlineHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }
