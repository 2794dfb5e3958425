"""gunicorn's gthread worker, giving a thread to a connection only once its request head
(request line and headers) has fully arrived, and its body too when it declares a
Content-Length of at most HEAD_LIMIT. gunicorn.conf.py uses it.

Why: gthread hands a connection to a thread as soon as one byte arrives, and the thread then
blocks reading the rest. 300 clients sending one header byte a second held every thread of
`make run` (2 x 128) and /healthz stopped answering (bench/bench_slowloris.py). Here the
partial head is read without blocking and kept; the connection goes back to gunicorn's own
poller until more bytes come, so a slow client costs a few bytes of memory, not a thread.
A head not complete within HEAD_SECONDS closes the connection.

gevent's worker also survives slow clients, but cost 15-30 % of bench_concurrency's
throughput here (SQLite and our CPU work block its single loop); this keeps gthread's figures.
Not covered: TLS terminated by gunicorn itself (we never do that: a front proxy terminates
TLS), and slow *chunked* bodies (read by a thread, at most MAX_BODY_BYTES; see README).
"""
from __future__ import annotations

import re
import select
import socket
import time

from gunicorn.workers.gthread import _DEFER, ThreadWorker

HEAD_LIMIT = 64 * 1024  # larger heads go to gunicorn's own parser and its limit_request_* checks
HEAD_SECONDS = 10.0     # a whole request head (and small body) must arrive within this, from its first byte
# Clients write a head and its body apart (requests, urllib3): the body is usually a moment
# behind. Waiting that moment in the thread, once per wake-up, spares the request a round
# through gunicorn's poller and thread pool (a pipe write and two thread hand-offs); a client
# slower than this is deferred as before, so it holds a thread at most this long per wake-up.
BODY_GRACE_MS = 2
_END_OF_HEAD = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]{1,9})[ \t]*\r\n", re.IGNORECASE)


def _complete(data: bytes) -> bool:
    """The request head has arrived, and its body too if it declared a small Content-Length.

    Only a hint for buffering: gunicorn's own parser still reads and checks everything."""
    end = data.find(_END_OF_HEAD)
    if end < 0:
        return len(data) >= HEAD_LIMIT
    declared = _CONTENT_LENGTH.search(data, 0, end + 2)
    if declared is None or int(declared[1]) > HEAD_LIMIT:
        return True  # no body, chunked, or too large (the app answers 413 without reading it)
    return len(data) >= end + len(_END_OF_HEAD) + int(declared[1])


class HeadBufferingWorker(ThreadWorker):
    def handle(self, conn):
        if self.cfg.is_ssl:  # the bytes on the socket are TLS records, not a request head
            return super().handle(conn)
        ready = self._collect_head(conn)
        if ready is None:
            return _DEFER  # back to the poller: no thread waits for the rest
        if not ready:
            # Closed by the client, or too slow. Shut both directions now: gunicorn's graceful
            # close (run on its main loop) would otherwise linger up to 2 s reading from a
            # client that is still dripping, once per connection.
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return False
        head = conn.pending_head
        conn.pending_head, conn.head_started = b"", None
        if conn.parser is None:
            conn.init()  # the HTTP/1 parser; handle() below then reads from its buffer first
        conn.parser.unreader.unread(head)
        return super().handle(conn)

    @staticmethod
    def _collect_head(conn) -> bool | None:
        """True: a whole head (and small body) is buffered; None: wait for more bytes; False: close."""
        head = getattr(conn, "pending_head", b"")
        if conn.parser is not None:  # bytes the parser read ahead after the previous request
            head = conn.parser.unreader.take_buffered() + head
        waited = False
        while not _complete(head):
            try:
                chunk = conn.sock.recv(HEAD_LIMIT, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                if waited or _END_OF_HEAD not in head or not _readable_soon(conn.sock):
                    break
                waited = True  # the body came within the grace: read it
                continue
            except OSError:
                return False
            if not chunk:
                return False  # the client closed the connection
            head += chunk
        conn.pending_head = head
        if _complete(head):
            return True
        if head:
            started = getattr(conn, "head_started", None) or time.monotonic()
            conn.head_started = started
            if time.monotonic() - started > HEAD_SECONDS:
                return False
        return None


def _readable_soon(sock) -> bool:
    """Bytes (or the peer's close) arrive within BODY_GRACE_MS. poll, not select: a process with
    many connections has descriptors past select's 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(BODY_GRACE_MS))
