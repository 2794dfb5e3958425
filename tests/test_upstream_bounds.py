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

    def __init__(self, answer, tls=None):
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        if tls is not None:  # an ssl.SSLContext: TLS on every connection
            self.listener = tls.wrap_socket(self.listener, server_side=True)
            self.url = self.url.replace("http://", "https://")
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


# --- How each way an exchange ends maps to a kind (libcurl's error codes: integration/upstream.py).

SECRET = "k-do-not-log-0123456789"


def _fetch(url: str, **settings):
    """fetch_page's failure, the on_call outcomes and what the meter recorded."""
    from integration.upstream import Meter

    outcomes, meter = [], Meter()
    client = DumplingClient(url, on_call=outcomes.append, sleep=lambda s: None, **settings)
    try:
        with pytest.raises(UpstreamFailure) as caught:
            client.fetch_page(SECRET, "alice", "API", meter=meter)
    finally:
        client.close()
    assert SECRET not in repr(caught.value)  # API keys never in an error
    return caught.value, outcomes, meter


def _refused_url() -> str:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now: connections are refused
    return f"http://127.0.0.1:{port}"


def test_a_refused_connection_is_unreachable_and_retried():
    failure, outcomes, meter = _fetch(_refused_url(), retries=2)
    assert (failure.kind, failure.detail, failure.upstream_status) == ("unreachable", "connection refused", None)
    assert outcomes == ["unreachable"] * 3 and meter.calls == 3 and meter.credits == 0


def test_a_server_that_never_answers_is_a_read_timeout_not_retried():
    server = MisbehavingServer(lambda conn, stopped: stopped.wait(30))
    try:
        failure, outcomes, meter = _fetch(server.url, read_timeout=1.0, total_seconds=10, retries=2)
    finally:
        server.stop()
    assert (failure.kind, failure.detail) == ("timeout", "read timeout")
    assert outcomes == ["timeout"] and meter.calls == 1  # sent: maybe charged, never retried


def test_headers_then_a_stall_is_an_answer_cut_off():
    server = MisbehavingServer(lambda conn, stopped: (conn.sendall(HEADERS % len(PAGE) + PAGE[:10]), stopped.wait(30)))
    try:
        failure, outcomes, _ = _fetch(server.url, read_timeout=1.0, total_seconds=10)
    finally:
        server.stop()
    assert (failure.kind, failure.detail, failure.upstream_status) == ("timeout", "answer cut off", 200)
    assert outcomes == ["timeout"]


def test_a_reset_mid_body_is_malformed_and_cut_off():
    server = MisbehavingServer(lambda conn, stopped: conn.sendall(HEADERS % len(PAGE) + PAGE[:10]))  # then closes
    try:
        failure, outcomes, _ = _fetch(server.url)
    finally:
        server.stop()
    assert (failure.kind, failure.detail, failure.upstream_status) == ("malformed", "answer cut off", 200)
    assert outcomes == ["malformed"]


def test_the_deadline_cuts_a_dripping_answer():
    # Each byte within the read timeout (body bytes count one by one; header bytes by the line).
    server = MisbehavingServer(lambda conn, stopped: (conn.sendall(HEADERS % len(PAGE)), drip(PAGE)(conn, stopped)))
    try:
        failure, outcomes, _ = _fetch(server.url, read_timeout=1.0, total_seconds=1.5, retries=0)
    finally:
        server.stop()
    assert (failure.kind, failure.detail) == ("timeout", "deadline") and outcomes == ["timeout"]


def test_a_declared_length_over_the_cap_is_refused_before_the_body():
    # The body never comes: only the declared length can end this before the read timeout.
    server = MisbehavingServer(lambda conn, stopped: (conn.sendall(HEADERS % 10_000_000), stopped.wait(30)))
    try:
        failure, outcomes, meter = _fetch(server.url, max_bytes=1024, read_timeout=20, total_seconds=25)
    finally:
        server.stop()
    assert (failure.kind, failure.detail, failure.upstream_status) == ("malformed", "answer over 1024 bytes", 200)
    assert outcomes == ["too_large"] and meter.calls == 1


def _gzip_answer(body: bytes):
    import gzip

    packed = gzip.compress(body)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
    return lambda conn, stopped: conn.sendall(head % len(packed) + packed)


def test_a_compressed_bomb_stops_at_the_cap_counted_unpacked():
    bomb = b'{"pad": "' + b"0" * 3_000_000 + b'"}'  # ~3 kB packed
    server = MisbehavingServer(_gzip_answer(bomb))
    try:
        failure, outcomes, _ = _fetch(server.url, max_bytes=1024 * 1024)
    finally:
        server.stop()
    assert (failure.kind, failure.detail) == ("malformed", f"answer over {1024 * 1024} bytes")
    assert outcomes == ["too_large"]


def test_a_compressed_answer_is_decoded():
    server = MisbehavingServer(_gzip_answer(PAGE))
    client = DumplingClient(server.url, total_seconds=5, retries=0)
    try:
        assert client.fetch_page("k", "alice", "API").has_more is False
    finally:
        server.stop()
        client.close()


def test_a_redirect_is_not_followed():
    answer = b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\n\r\n"
    server = MisbehavingServer(lambda conn, stopped: conn.sendall(answer))
    try:
        failure, outcomes, _ = _fetch(server.url)
    finally:
        server.stop()
    assert failure.upstream_status == 302 and outcomes == ["http_302"]


def test_proxy_settings_in_the_environment_are_ignored(monkeypatch):
    server = MisbehavingServer(lambda conn, stopped: conn.sendall(HEADERS % len(PAGE) + PAGE))
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, _refused_url())
    client = DumplingClient(server.url, total_seconds=5, retries=0)
    try:
        assert client.fetch_page("k", "alice", "API").accounts == ()
    finally:
        server.stop()
        client.close()


def test_a_key_that_would_break_the_header_line_is_never_sent():
    server = MisbehavingServer(lambda conn, stopped: conn.sendall(HEADERS % len(PAGE) + PAGE))
    client = DumplingClient(server.url, total_seconds=5, retries=0)
    try:
        with pytest.raises(UpstreamFailure) as caught:
            client.fetch_page("k\r\nX-Injected: 1", "alice", "API")
    finally:
        server.stop()
        client.close()
    assert caught.value.kind == "unauthorized" and "Injected" not in repr(caught.value)


def test_a_connection_never_accepted_is_an_unreachable_connect_timeout():
    # A listener whose accept queue is full: Linux drops further SYNs, the connect hangs.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        failure, outcomes, _ = _fetch(f"http://127.0.0.1:{port}", connect_timeout=0.5, total_seconds=5, retries=0)
    finally:
        for sock in (listener, *fillers):
            sock.close()
    assert (failure.kind, failure.detail) == ("unreachable", "connect timeout") and outcomes == ["unreachable"]


def _tls_server(tmp_path) -> tuple[MisbehavingServer, str]:
    """A server answering one page over TLS, with a self-signed certificate for 127.0.0.1, and
    the certificate's file (a CA bundle that trusts it)."""
    import datetime as dt
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = MisbehavingServer(lambda conn, stopped: conn.sendall(HEADERS % len(PAGE) + PAGE), tls=context)
    return server, str(tmp_path / "cert.pem")


def test_https_checks_the_certificate(tmp_path):
    """TLS against certifi's bundle: a self-signed certificate is refused (unreachable: nothing sent)."""
    server, _ = _tls_server(tmp_path)
    try:
        failure, outcomes, _ = _fetch(server.url, retries=0, total_seconds=5)
    finally:
        server.stop()
    assert (failure.kind, failure.detail) == ("unreachable", "TLS certificate refused") and outcomes == ["unreachable"]


def test_https_answers_when_the_certificate_is_trusted(tmp_path):
    """The production path (the upstream is https): the handshake, the name check and the answer,
    with a bundle that trusts the server's certificate."""
    server, bundle = _tls_server(tmp_path)
    outcomes = []
    client = DumplingClient(server.url, on_call=outcomes.append, retries=0, total_seconds=5, ca_file=bundle)
    try:
        page = client.fetch_page(SECRET, "alice", "API")
    finally:
        client.close()
        server.stop()
    assert (page.accounts, page.has_more, outcomes) == ((), False, ["ok"])


def test_a_kept_alive_handle_reports_each_exchange_afresh():
    """The thread's handle is reused: a refused call after an answered one is not read as cut off."""
    from fakeupstream import FakeDumpling

    fake = FakeDumpling().start()
    fake.add_key("k")
    fake.seed("alice", 3)
    client = DumplingClient(fake.url, retries=0)
    try:
        assert len(client.fetch_page("k", "alice", "API").accounts) == 3
        fake.stop()
        with pytest.raises(UpstreamFailure) as caught:
            client.fetch_page("k", "alice", "API")
    finally:
        fake.stop()
        client.close()
    assert (caught.value.kind, caught.value.upstream_status, caught.value.detail) == ("unreachable", None,
                                                                                      "connection refused")
