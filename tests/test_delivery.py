"""Webhook delivery primitives, against a real HTTP receiver on 127.0.0.1."""

import base64
import json
import socket
import time
from email.utils import formatdate

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integration.delivery import (
    RETRY_SCHEDULE,
    Sender,
    TargetRefused,
    check_target_url,
    new_secret,
    next_attempt_delay,
    sign,
    webhook_headers,
)
from tests.receiver import Answer, Receiver

# ---------------------------------------------------------------- receiver


@pytest.fixture
def receiver():
    r = Receiver(default=Answer(body=b'{"received": true}'))
    r.route("/hang", Answer(hang=True))
    r.route("/gone", Answer(410))
    r.route("/limited", Answer(429, {"Retry-After": "120"}))
    r.route("/busy-date", Answer(503, {"Retry-After": formatdate(time.time() + 600, usegmt=True)}))
    r.route("/redirect", Answer(302, {"Location": r.url_for("/ok?via=redirect")}))
    yield r
    r.close()


def _url(r, path="/ok", scheme="http", host="127.0.0.1"):
    return r.url_for(path, host=host, scheme=scheme)


def _fake_dns(monkeypatch, answer_ip, family=socket.AF_INET):
    """Make every getaddrinfo answer `answer_ip`, as a hostile DNS server would."""
    calls = []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        calls.append(host)
        sockaddr = (answer_ip, int(port or 0)) if family == socket.AF_INET else (answer_ip, int(port or 0), 0, 0)
        return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    return calls


BODY = json.dumps({"id": "123", "uniqueId": "someone", "followedBy": "watched"}).encode()


# ---------------------------------------------------------------- signing


def test_new_secret_is_standard_webhooks_format():
    a, b = new_secret(), new_secret()
    assert a.startswith("whsec_") and a != b
    assert len(base64.b64decode(a[len("whsec_"):], validate=True)) == 24


def test_sign_matches_standard_webhooks_test_vector():
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert sig == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_headers_verify_with_standardwebhooks_and_tampering_fails():
    secret = new_secret()
    headers = webhook_headers(secret, "msg_1", int(time.time()), BODY)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "tiktok-following-hooks/1"
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"someone", b"someone_else"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):  # the id is signed too
        Webhook(secret).verify(BODY, {**headers, "webhook-id": "msg_2"})


# ---------------------------------------------------------------- target URLs


@pytest.mark.parametrize(
    "url, normalized",
    [
        ("https://hooks.zapier.com/hooks/catch/123/abc/", "https://hooks.zapier.com/hooks/catch/123/abc/"),
        ("  HTTPS://Hook.Integromat.COM:443/x?y=1#frag ", "https://hook.integromat.com/x?y=1"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com:8443/p", "https://example.com:8443/p"),
        ("https://8.8.8.8/hook", "https://8.8.8.8/hook"),
        ("https://[2606:4700:4700::1111]/hook", "https://[2606:4700:4700::1111]/hook"),
    ],
)
def test_check_target_url_accepts_public_https(url, normalized):
    assert check_target_url(url, allow_private=False) == normalized


@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "http://example.com/hook",  # plain http
        "ftp://example.com/hook",
        "javascript:alert(1)",
        "https:///no-host",
        "https://user:pw@example.com/",
        "https://token@example.com/",
        "https://example.com:99999/",
        "https://127.0.0.1/",
        "https://127.1/",  # legacy spellings of loopback
        "https://2130706433/",
        "https://0x7f.0.0.1/",
        "https://localhost/",
        "https://api.localhost/",
        "https://10.1.2.3/",
        "https://172.16.0.1/",
        "https://192.168.1.1/",
        "https://100.64.0.1/",  # CG-NAT
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00:ec2::254]/",
        "https://0.0.0.0/",
        "https://[::]/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[fe80::1]/",
        "https://[fec0::1]/",
        "https://224.0.0.1/",
        "https://240.0.0.1/",
        "https://255.255.255.255/",
        "https://example.com/" + "a" * 3000,
        "https://exa mple.com/",
    ],
)
def test_check_target_url_refuses(url):
    with pytest.raises(TargetRefused) as info:
        check_target_url(url, allow_private=False)
    assert isinstance(info.value, ValueError)
    assert str(info.value).endswith(".")  # a sentence for a no-code user


def test_check_target_url_allow_private_relaxes_only_addresses_and_http():
    assert check_target_url("http://127.0.0.1:8080/x", allow_private=True) == "http://127.0.0.1:8080/x"
    assert check_target_url("http://localhost/", allow_private=True) == "http://localhost/"
    assert check_target_url("https://169.254.169.254/", allow_private=True) == "https://169.254.169.254/"
    for url in ("ftp://127.0.0.1/", "http://user:pw@127.0.0.1/", "http:///x"):
        with pytest.raises(TargetRefused):
            check_target_url(url, allow_private=True)


# ---------------------------------------------------------------- sending


def test_allow_private_send_arrives_signed(receiver):
    secret = new_secret()
    headers = webhook_headers(secret, "msg_abc", int(time.time()), BODY)
    with Sender(allow_private=True) as sender:
        result = sender.send(_url(receiver), BODY, headers)
    assert (result.status, result.ok, result.gone, result.error, result.retry_after) == (200, True, False, None, None)
    [request] = receiver.requests
    path, got_headers, got_body = request.path, request.headers, request.body
    assert path == "/ok" and got_body == BODY
    assert Webhook(secret).verify(got_body, got_headers)  # verifies as the receiver sees it


def test_sender_reuses_pooled_connection(receiver):
    with Sender(allow_private=True) as sender:
        for _ in range(3):
            assert sender.send(_url(receiver), BODY, {}).ok
    assert len(receiver.requests) == 3
    assert receiver.connections == 1


def test_sender_is_shared_safely_by_a_thread_pool(receiver):
    from concurrent.futures import ThreadPoolExecutor

    with Sender(allow_private=True, pool_size=8) as sender, ThreadPoolExecutor(16) as pool:
        bodies = [json.dumps({"n": i}).encode() for i in range(64)]
        results = list(pool.map(lambda b: sender.send(_url(receiver), b, {}), bodies))
    assert all(r.ok for r in results)
    assert sorted(r.body for r in receiver.requests) == sorted(bodies)


def test_tls_failure_is_a_result(receiver):
    # https to a plain-HTTP receiver: the handshake fails, send() must not raise.
    with Sender(allow_private=True, timeout=2) as sender:
        result = sender.send(_url(receiver, scheme="https"), BODY, {})
    assert result.status is None and result.error.startswith("TLS error")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_private_target_refused_before_connecting(receiver, host):
    with Sender(allow_private=False, timeout=2) as sender:
        for scheme in ("http", "https"):
            result = sender.send(_url(receiver, scheme=scheme, host=host), BODY, {})
            assert result.status is None and not result.ok
            assert result.error.startswith("refused")
    assert receiver.connections == 0 and receiver.requests == []


def test_dns_name_resolving_to_loopback_refused_at_connect_time(receiver, monkeypatch):
    # A public-looking name passes the URL check; only the resolved address tells.
    calls = _fake_dns(monkeypatch, "127.0.0.1")
    url = _url(receiver, scheme="https", host="hooks.example.test")
    assert check_target_url(url, allow_private=False)
    with Sender(allow_private=False, timeout=2) as sender:
        result = sender.send(url, BODY, {})
    assert calls == ["hooks.example.test"]
    assert result.status is None and result.error == "refused: the address is private or reserved"
    assert receiver.connections == 0


def test_connect_time_check_covers_ranges_the_library_lets_through(monkeypatch):
    # requests-hardened alone lets fec0::/10 (site-local) through; our re-check does not.
    _fake_dns(monkeypatch, "fec0::1", family=socket.AF_INET6)
    with Sender(allow_private=False, timeout=1) as sender:
        result = sender.send("https://hooks.example.test/x", BODY, {})
    assert result.error == "refused: the address is private or reserved"


def test_allow_private_dns_name_arrives_with_original_host(receiver, monkeypatch):
    _fake_dns(monkeypatch, "127.0.0.1")
    with Sender(allow_private=True) as sender:
        result = sender.send(_url(receiver, host="hooks.example.test"), BODY, {})
    assert result.ok
    [request] = receiver.requests
    assert request.headers["host"] == f"hooks.example.test:{receiver.port}"


def test_redirect_is_not_followed(receiver):
    with Sender(allow_private=True) as sender:
        result = sender.send(_url(receiver, "/redirect"), BODY, {})
    assert result.status == 302 and not result.ok and not result.gone
    assert "redirect" in result.error
    assert [r.path for r in receiver.requests] == ["/redirect"]


def test_410_means_gone(receiver):
    with Sender(allow_private=True) as sender:
        result = sender.send(_url(receiver, "/gone"), BODY, {})
    assert (result.status, result.ok, result.gone) == (410, False, True)


def test_429_retry_after_seconds(receiver):
    with Sender(allow_private=True) as sender:
        result = sender.send(_url(receiver, "/limited"), BODY, {})
    assert (result.status, result.ok, result.retry_after) == (429, False, 120.0)


def test_503_retry_after_http_date(receiver):
    with Sender(allow_private=True) as sender:
        result = sender.send(_url(receiver, "/busy-date"), BODY, {})
    assert result.status == 503
    assert 590 <= result.retry_after <= 601


def test_silent_receiver_times_out_within_the_timeout(receiver):
    with Sender(allow_private=True, timeout=0.5) as sender:
        start = time.monotonic()
        result = sender.send(_url(receiver, "/hang"), BODY, {})
        elapsed = time.monotonic() - start
    assert result.status is None and not result.ok
    assert result.error.startswith("timeout")
    assert 0.4 <= elapsed < 1.5


def test_connection_failure_is_a_result_without_the_secret_url():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hooks/catch/123/SECRET-TOKEN/?key=SECRET-KEY"
    with Sender(allow_private=True, timeout=2) as sender:
        result = sender.send(url, BODY, {})
    assert result.status is None and result.error == "connection failed"
    assert "SECRET" not in result.error


# ---------------------------------------------------------------- retry schedule


class _EdgeRng:
    """uniform(a, b) answers a (low=True) or b: the extremes of the jitter."""

    def __init__(self, low):
        self.low = low

    def uniform(self, a, b):
        return a if self.low else b


def test_schedule_spans_about_a_day():
    assert RETRY_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert sum(RETRY_SCHEDULE) == 99_305  # ~27.6 h from first to last attempt


def test_next_attempt_delay_walks_the_schedule_with_bounded_jitter():
    assert next_attempt_delay(0, None) == 0.0  # first attempt is immediate
    for n, step in enumerate(RETRY_SCHEDULE, start=1):
        assert next_attempt_delay(n, None, rng=_EdgeRng(low=True)) == pytest.approx(step * 0.9)
        assert next_attempt_delay(n, None, rng=_EdgeRng(low=False)) == pytest.approx(step * 1.1)
        assert step * 0.9 <= next_attempt_delay(n, None) <= step * 1.1  # default rng


def test_next_attempt_delay_gives_up_after_the_last_step():
    last = len(RETRY_SCHEDULE)
    assert next_attempt_delay(last, None) is not None
    assert next_attempt_delay(last + 1, None) is None
    assert next_attempt_delay(last + 1, 60.0) is None  # Retry-After does not extend the schedule


def test_next_attempt_delay_honours_larger_retry_after_never_earlier():
    # step 1 is 5 s; the receiver asks for 120 s: never come back before 120 s.
    assert next_attempt_delay(1, 120.0, rng=_EdgeRng(low=True)) == pytest.approx(120.0)
    assert next_attempt_delay(1, 120.0, rng=_EdgeRng(low=False)) == pytest.approx(132.0)
    # A smaller Retry-After than the step does not shorten the schedule.
    assert next_attempt_delay(3, 10.0, rng=_EdgeRng(low=True)) == pytest.approx(1800 * 0.9)
    # A huge Retry-After is capped at a day.
    assert next_attempt_delay(1, 30 * 86400.0, rng=_EdgeRng(low=True)) == pytest.approx(86400.0)


# ---------------------------------------------------------------- the deadline holds whatever the receiver does


def test_a_receiver_dripping_its_answer_is_cut_at_the_deadline(receiver):
    # One byte every 0.2 s: each read succeeds, so a per-read timeout never fires (the whole
    # answer would take ~20 s); the send's deadline ends it.
    receiver.route("/drip", Answer(drip=0.2))
    with Sender(allow_private=True, timeout=1) as sender:
        start = time.monotonic()
        result = sender.send(_url(receiver, "/drip"), BODY, {})
        elapsed = time.monotonic() - start
        assert result.status is None and not result.ok
        assert result.error == "timeout: no complete answer within 1 s"
        assert elapsed < 3
        # The cut connection is not reused: the next send gets its answer.
        assert sender.send(_url(receiver), BODY, {}).ok


def test_a_body_dripped_after_a_quick_answer_is_cut_and_the_answer_kept(receiver):
    receiver.route("/slow-body", Answer(body=b"x" * 1000, drip=0.2, drip_body=True))
    with Sender(allow_private=True, timeout=1) as sender:
        start = time.monotonic()
        result = sender.send(_url(receiver, "/slow-body"), BODY, {})
        assert result.status == 200 and result.ok  # the answer came in time; the rest is not needed
        assert time.monotonic() - start < 3
