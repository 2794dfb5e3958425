"""The web process as gunicorn runs it: slow clients cannot starve it, no control socket,
LOG_LEVEL honoured, the temporary metrics folder removed on exit."""
from __future__ import annotations

import json
import socket
import time

import requests

from integration.migrate import upgrade
from tests.conftest import start_service, stop_service

SLOW_CLIENTS = 48  # more than the 2 x 16 threads the test service runs, of each kind
SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a"
SLOW_BODY = (b"POST /v1/api/following HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Content-Length: 100\r\n\r\n{")


def test_slow_clients_do_not_stop_healthz_and_the_process_is_tidy(fake_upstream_server, tmp_path):
    home, run, tmp = tmp_path / "home", tmp_path / "run", tmp_path / "tmp"
    for folder in (home, run, tmp):
        folder.mkdir()
    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    log = tmp_path / "web.log"
    service = start_service(url, fake_upstream_server.url, workers=2, threads=16, log_path=log,
                            extra_env={"HOME": str(home), "XDG_RUNTIME_DIR": str(run), "TMPDIR": str(tmp),
                                       "LOG_LEVEL": "WARNING"})
    port = int(service.url.rsplit(":", 1)[1])
    slow: list[socket.socket] = []
    try:
        metrics_dirs = [p.name for p in tmp.iterdir() if p.name.startswith("prom-")]
        assert len(metrics_dirs) == 1
        for start in (SLOW_HEAD, SLOW_BODY) * SLOW_CLIENTS:  # requests that never finish their head or body
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(start)
            slow.append(sock)
        for byte in b"bcd":  # keep them trickling (valid in a header value and a JSON string)
            for sock in slow:
                sock.sendall(bytes([byte]))
            # A behaviour check, not a timing: with every thread held, this never answers.
            assert requests.get(service.url + "/healthz", timeout=5).json() == {"status": "ok"}
        requests.post(service.url + "/v1/api/following", json={"handle": "nobody"}, timeout=10)
    finally:
        for sock in slow:
            sock.close()
        stop_service(service)
    assert not list(home.rglob("*.ctl")) and not list(run.rglob("*.ctl"))  # gunicorn's control socket is off
    assert not [p for p in tmp.iterdir() if p.name.startswith("prom-")]  # removed on exit
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]  # ours, not gunicorn's
    assert not [line for line in lines if line["msg"] == "request"]  # INFO lines are off at LOG_LEVEL=WARNING


class _Conn:
    """A connection whose socket gives `chunks` one recv at a time (None: nothing yet)."""

    def __init__(self, *chunks):
        self.parser, self.chunks = None, list(chunks)
        self.sock = self

    def recv(self, _size, _flags):
        chunk = self.chunks.pop(0) if self.chunks else None
        if chunk is None:
            raise BlockingIOError
        return chunk


HEAD = b"POST /v1/api/following HTTP/1.1\r\nHost: x\r\nContent-Length: 19\r\n\r\n"


def test_a_body_a_moment_behind_its_head_is_waited_for_once(monkeypatch):
    """The body comes within the grace: the request goes on in this thread; a body still missing
    after one grace sends the connection back to the poller (no thread waits for it)."""
    from integration import http_worker

    graces = []
    monkeypatch.setattr(http_worker, "_readable_soon", lambda sock: graces.append(sock) or True)
    conn = _Conn(HEAD, None, b'{"handle": "alice"}')
    assert http_worker.HeadBufferingWorker._collect_head(conn) is True
    assert conn.pending_head == HEAD + b'{"handle": "alice"}' and len(graces) == 1
    conn = _Conn(HEAD, None, b'{"hand', None, b'le": "alice"}')
    assert http_worker.HeadBufferingWorker._collect_head(conn) is None and len(graces) == 2  # one grace only
    conn = _Conn(HEAD[:20], None, HEAD[20:])  # a head still arriving: never waited for
    assert http_worker.HeadBufferingWorker._collect_head(conn) is None and len(graces) == 2


def test_the_grace_is_bounded():
    from integration import http_worker

    left, right = socket.socketpair()
    try:
        started = time.monotonic()
        assert not http_worker._readable_soon(left)
        assert time.monotonic() - started < 0.5
        right.sendall(b"x")
        assert http_worker._readable_soon(left)
    finally:
        left.close()
        right.close()
