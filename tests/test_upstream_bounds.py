"""The upstream's answer is bounded in total time (headers and body, whatever the server
does) and in bytes. Servers here are tiny local sockets that misbehave on purpose."""
from __future__ import annotations

import socket
import threading

import pytest

from integration.errors import UpstreamFailure
from integration.upstream import DumplingClient

PAGE = b'{"followingList": [], "maxCursor": 0, "minCursor": 0, "hasMore": false, "total": 0}'


class MisbehavingServer:
    """Accepts connections on 127.0.0.1 and answers each with `answer(sock)`."""

    def __init__(self, answer):
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        with conn:
            conn.recv(65536)  # the request (small)
            try:
                self.answer(conn, self.stopped)
            except OSError:  # the client gave up: what we want
                pass

    def stop(self):
        self.stopped.set()
        self.listener.close()


def drip(data: bytes, every: float = 0.2):
    def answer(conn, stopped):
        for byte in data:
            if stopped.wait(every):
                return
            conn.sendall(bytes([byte]))
    return answer


def _fetch_in_thread(client: DumplingClient, grace: float) -> tuple[bool, object]:
    """Run fetch_page; True if it ended within total_seconds + grace (a behaviour bound, not a timing)."""
    outcome: list = []

    def run():
        try:
            outcome.append(client.fetch_page("k", "alice", "API"))
        except UpstreamFailure as failure:
            outcome.append(failure)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(client.total_seconds + grace)
    return (not thread.is_alive()), (outcome[0] if outcome else None)


HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


@pytest.mark.parametrize("answer", [
    # the status line and headers, one byte every 0.2 s (each read is well inside the read timeout)
    drip(HEADERS % len(PAGE) + PAGE),
    # headers at once, then the body one byte every 0.2 s
    lambda conn, stopped: (conn.sendall(HEADERS % len(PAGE)), drip(PAGE)(conn, stopped)),
], ids=["dripping-headers", "dripping-body"])
def test_a_dripping_upstream_cannot_hold_a_thread_past_the_total_bound(answer):
    server = MisbehavingServer(answer)
    client = DumplingClient(server.url, connect_timeout=1, read_timeout=1.0, total_seconds=1.5, retries=0)
    try:
        ended, outcome = _fetch_in_thread(client, grace=3.0)
        assert ended, "fetch_page still reading past UPSTREAM_TOTAL_SECONDS"
        assert isinstance(outcome, UpstreamFailure) and outcome.kind == "timeout"
    finally:
        server.stop()
        client.close()


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "chunked"])
def test_an_answer_over_the_byte_cap_is_malformed(declare_length):
    big = b'{"followingList": [], "pad": "' + b"x" * 3_000_000 + b'", "maxCursor": 0, "minCursor": 0, "hasMore": false}'

    def answer(conn, stopped):
        if declare_length:
            conn.sendall(HEADERS % len(big) + big)
            return
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        for start in range(0, len(big), 65536):
            piece = big[start:start + 65536]
            conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.sendall(b"0\r\n\r\n")

    server = MisbehavingServer(answer)
    client = DumplingClient(server.url, total_seconds=10, retries=0, max_bytes=1024 * 1024)
    try:
        with pytest.raises(UpstreamFailure) as caught:
            client.fetch_page("k", "alice", "API")
        assert caught.value.kind == "malformed"
    finally:
        server.stop()
        client.close()


def test_an_answer_under_the_cap_still_parses():
    server = MisbehavingServer(lambda conn, stopped: conn.sendall(HEADERS % len(PAGE) + PAGE))
    client = DumplingClient(server.url, total_seconds=5, retries=0, max_bytes=1024)
    try:
        page = client.fetch_page("k", "alice", "API")
        assert page.accounts == () and page.has_more is False
    finally:
        server.stop()
        client.close()
