"""HTTP plumbing: a threading server that routes to the fake's API and control API."""
from __future__ import annotations

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import control
from .wire import API_PATH, CONTROL_PREFIX, Reply, error_reply


class Server(ThreadingHTTPServer):
    daemon_threads = True  # slow answers never keep the process alive
    block_on_close = False
    request_queue_size = 1024  # listen backlog: bursts of 200+ concurrent connects

    def __init__(self, address, fake) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.accepted = 0  # connections ever accepted: tests count a client's new connections
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
            self.accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut open (keep-alive or waiting) connections, as a dying upstream would."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away (it timed out, or we were stopped): not our bug
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real upstream
    server_version = "FakeDumpling/1.0"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK add ~40 ms to every keep-alive answer.
    disable_nagle_algorithm = True

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet by design
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _dispatch(self) -> None:
        # Always read the whole body first, or it would corrupt the next keep-alive request.
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        path = urlsplit(self.path).path
        if path == API_PATH:
            if self.command == "POST":
                reply = self.server.fake.answer(self.headers.get("Authorization"), raw)
            else:
                reply = error_reply(405, "Use POST.")
        elif path.startswith(CONTROL_PREFIX):
            reply = control.dispatch(self.server.fake, self.command, path[len(CONTROL_PREFIX):], raw)
        else:
            reply = error_reply(404, "Not found.")
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)
