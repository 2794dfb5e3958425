"""A wall-clock deadline for a whole HTTP exchange, whatever the other side does.

Socket timeouts bound each read, not the exchange: a receiver that drips one byte every
half second never trips a 15 s read timeout and holds the sending thread for ever. Here
one watchdog thread shuts down the sockets of every exchange past its deadline; the
blocked read then fails at once and the connection is dropped.

Use: `with WATCHDOG.guard(seconds) as guard: session.post(...)` with a session whose
adapters were passed to `use_deadline_connections` (the connections register their sockets
with the guard of the thread using them): the webhook sends (integration/delivery.py). The
upstream client needs none of it: libcurl bounds its whole exchange (integration/upstream.py).
`guard.expired` tells the caller the deadline, not the peer, ended the exchange. The TLS handshake is bounded by the socket
timeout as a whole (CPython's ssl applies it as a deadline to the handshake).
"""
from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from contextlib import contextmanager

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


class Guard:
    def __init__(self, deadline: float):
        self.deadline = deadline
        self.expired = False
        self.done = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def track(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:  # registered after the deadline: cut it now
            _shutdown(sock)

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def finish(self) -> None:
        with self._lock:
            self.done = True
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    try:
        # The plain socket's shutdown, also for an SSLSocket: wakes a read blocked in
        # another thread without touching the TLS state that thread is using.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # already closed or never connected
        pass


class Watchdog:
    def __init__(self, monotonic=time.monotonic):
        self._monotonic = monotonic
        self._heap: list[tuple[float, int, Guard]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wakes_at = float("inf")  # when the watchdog next looks at the heap by itself

    @contextmanager
    def guard(self, seconds: float):
        guard = Guard(self._monotonic() + seconds)
        with self._cond:
            heapq.heappush(self._heap, (guard.deadline, next(self._order), guard))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="send-deadline", daemon=True)
                self._thread.start()
            if guard.deadline < self._wakes_at:  # due before the watchdog looks again: it must wait less
                # Only then: waking it for every guard cost each call a thread switch (and the
                # GIL) while a call is waiting on its answer (docs/SCALING.md "The action's overhead").
                self._wakes_at = guard.deadline
                self._cond.notify()
        previous = getattr(_local, "guard", None)
        _local.guard = guard
        try:
            yield guard
        finally:
            _local.guard = previous
            guard.finish()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:  # finished in time: forget it
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wakes_at = float("inf")
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - self._monotonic()
                if wait > 0:
                    wait = min(wait, 1.0)  # 1.0: finished guards are swept at least every second
                    self._wakes_at = self._monotonic() + wait
                    self._cond.wait(wait)
                    continue
                _, _, guard = heapq.heappop(self._heap)
            guard.expire()


WATCHDOG = Watchdog()


def _track(sock) -> None:
    guard = getattr(_local, "guard", None)
    if guard is not None:
        guard.track(sock)


_ONE_WRITE_BYTES = 64 * 1024  # a larger body is written on its own, as urllib3 does (no copy of it)


class _Tracked:
    """Mixin for urllib3 connections: hand every socket used to the current guard.

    Also sends a request's head and a small bytes body in one write: urllib3 writes the head,
    then the body, so the receiver woke twice and each send paid a second system call."""

    _held_head: bytes | None = None  # the head, waiting for the body (one write)
    _hold_head = False               # the next send() is the head of a request with a small body

    def _new_conn(self):
        sock = super()._new_conn()
        _track(sock)
        return sock

    def request(self, method, url, body=None, *args, **kwargs):
        _track(self.sock)  # a kept-alive connection, or one just connected (TLS)
        self._hold_head = isinstance(body, bytes) and 0 < len(body) <= _ONE_WRITE_BYTES
        try:
            return super().request(method, url, body, *args, **kwargs)
        finally:
            self._hold_head, self._held_head = False, None  # never carried over to another request

    def send(self, data):
        if self._hold_head:  # urllib3's one write of the whole head: the body comes next
            self._hold_head, self._held_head = False, data
            return None
        if self._held_head is not None:
            data, self._held_head = self._held_head + data, None
        return super().send(data)

    def getresponse(self, *args, **kwargs):
        _track(self.sock)  # plain HTTP connects inside request(): its socket is known by now
        return super().getresponse(*args, **kwargs)


class _HTTPConnection(_Tracked, HTTPConnection):
    pass


class _HTTPSConnection(_Tracked, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOL_CLASSES = {"http": _HTTPPool, "https": _HTTPSPool}


def use_deadline_connections(adapter) -> None:
    """Make a requests adapter's pools use connections the watchdog can cut."""
    adapter.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

