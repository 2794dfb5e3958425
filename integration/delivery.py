"""Webhook delivery primitives: Standard Webhooks signing, safe sending, retry schedule.

No database here: the worker stores deliveries and calls these.

Safety model (SSRF):
- ``check_target_url`` is the cheap early check (at subscribe time and before
  each send): scheme, host, no userinfo, and literal IPs.
- DNS names can only be judged after resolution, and an attacker controlling
  DNS can answer differently the second time (rebinding). requests-hardened's
  ``IPFilterAdapter`` resolves the host ONCE while building the connection pool
  key, refuses private addresses, and pins the connection to the address it
  checked (the Host header and TLS SNI/cert check keep the original name). So
  the address checked is the address connected to.
- Redirects are never followed: a 3xx is a failed attempt. Following hops would
  only add ways to reach somewhere the user did not register, and webhook
  receivers have no reason to redirect a POST.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import re
import secrets
import socket
import time
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests_hardened import Config, HTTPSession
from requests_hardened.ip_filter import EXTRA_BLOCKED_NET_RANGES, InvalidIPAddress
from requests_hardened.ip_filter_adapter import IPFilterAdapter
from urllib3.util import Timeout

from integration.deadline import WATCHDOG, use_deadline_connections
from integration.retry_after import MAX_RETRY_AFTER, parse_retry_after

USER_AGENT = "tiktok-following-hooks/1"
_SECRET_PREFIX = "whsec_"

# ---------------------------------------------------------------- signing


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` + base64 of 24 random bytes."""
    return _SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _secret_key(secret: str) -> bytes:
    raw = secret[len(_SECRET_PREFIX):] if secret.startswith(_SECRET_PREFIX) else secret
    key = base64.b64decode(raw, validate=True)
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`` (Standard Webhooks)."""
    signed = f"{msg_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(_secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }


# ---------------------------------------------------------------- target URLs


class TargetRefused(ValueError):
    """The target URL is not acceptable; the message is meant for the end user."""


# Named for clarity; both are already inside link-local / unique-local ranges.
_METADATA_ADDRESSES = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_MAX_URL_LENGTH = 2048


def _is_forbidden_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if ip.version == 6:
        if ip.ipv4_mapped is not None:  # ::ffff:127.0.0.1 is 127.0.0.1
            ip = ip.ipv4_mapped
        elif ip.is_site_local:  # fec0::/10: deprecated but still not public
            return True
    return (
        ip in _METADATA_ADDRESSES
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or any(ip in net for net in EXTRA_BLOCKED_NET_RANGES)  # CG-NAT, NAT64, 6to4...
    )


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # The resolver also accepts legacy IPv4 spellings ("127.1", "2130706433",
    # "0x7f.0.0.1"); catch them here so the user hears about it now.
    if re.fullmatch(r"[0-9a-fx.]+", host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_target_url(url: str, *, allow_private: bool) -> str:
    """Return the normalized URL, or raise TargetRefused with a user-facing reason."""
    if not isinstance(url, str) or not url.strip():
        raise TargetRefused("The webhook URL is empty.")
    url = url.strip()
    if len(url) > _MAX_URL_LENGTH:
        raise TargetRefused(f"The webhook URL is longer than {_MAX_URL_LENGTH} characters.")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise TargetRefused("The webhook URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("The webhook URL is not a valid URL.") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_private):
        raise TargetRefused("The webhook URL must start with https://.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("The webhook URL must not contain a user name or password.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TargetRefused("The webhook URL has no host name.")

    if not allow_private:
        ip = _literal_ip(host)
        if ip is not None and _is_forbidden_ip(ip):
            raise TargetRefused("The webhook URL points to a private or reserved address; use a public address.")
        if host == "localhost" or host.endswith(".localhost"):  # always loopback (RFC 6761)
            raise TargetRefused("The webhook URL points to this machine (localhost); use a public address.")

    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != {"https": 443, "http": 80}[scheme]:
        netloc += f":{port}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{parts.path or '/'}{query}"  # the fragment is never sent: drop it


def check_target_resolves(url: str, *, allow_private: bool) -> None:
    """Subscribe-time rule for DNS names: every address the host resolves to must be public.

    The user hears "private address" now instead of 27 hours of failed retries. The
    connect-time check (_CheckedAdapter) still guards each send: DNS can change later.
    """
    if allow_private:
        return
    host = (urlsplit(url).hostname or "").rstrip(".")
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise TargetRefused("The webhook URL's host name does not resolve; check the URL.") from None
    for *_, sockaddr in infos:
        if _is_forbidden_ip(ipaddress.ip_address(sockaddr[0].split("%", 1)[0])):
            raise TargetRefused("The webhook URL's host name points to a private or reserved address; "
                                "use a public address.")


# ---------------------------------------------------------------- sending


@dataclass(frozen=True)
class SendResult:
    status: int | None  # HTTP status, None when no answer
    retry_after: float | None  # seconds, from a 429/503 Retry-After
    error: str | None  # short reason; fixed texts only, so never a URL (Zapier URLs are secrets)
    ok: bool  # 2xx
    gone: bool  # 410: the receiver asks us to stop


class _CheckedAdapter(IPFilterAdapter):
    """requests-hardened's filter + pool sizing + our own classifier on the pinned IP.

    The library refuses ``is_private``/multicast/its extra ranges; we re-check the
    very address it pinned with ``_is_forbidden_ip`` so the connect-time rule is the
    same one check_target_url applies (it adds e.g. fec0::/10 and IPv6 reserved).
    """

    def __init__(self, *, https: bool, pool_size: int):
        super().__init__(is_https_proto=https, allow_loopback=False)
        self.init_poolmanager(pool_size, pool_size)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if _is_forbidden_ip(ipaddress.ip_address(host_params["host"].strip("[]"))):
            raise InvalidIPAddress(host_params["host"])
        return host_params, pool_kwargs


_BODY_READ_LIMIT = 64 * 1024


class Sender:
    """One pooled, thread-safe session for POSTing webhook deliveries.

    Shared by the worker's threads: urllib3's pool manager is thread-safe, and we
    keep no per-request state on the session (cookies are refused, env ignored).
    """

    def __init__(self, *, allow_private: bool, timeout: float = 15.0, pool_size: int = 32):
        self.allow_private = allow_private
        self.timeout = timeout
        self._session = HTTPSession(
            Config(
                ip_filter_enable=False,  # we mount our own adapters below (pool size, classifier)
                ip_filter_allow_loopback_ips=False,
                never_redirect=True,
                default_timeout=(timeout, timeout),
            )
        )
        for scheme in ("http://", "https://"):
            adapter = (
                HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
                if allow_private
                else _CheckedAdapter(https=scheme == "https://", pool_size=pool_size)
            )
            use_deadline_connections(adapter)
            self._session.mount(scheme, adapter)
        # No proxies / .netrc from the environment: a proxy would be checked instead
        # of the target, and .netrc could attach credentials to a user's URL.
        self._session.trust_env = False
        # Receivers must not be able to plant cookies that later go to another receiver.
        self._session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))

    def send(self, url: str, body: bytes, headers: dict) -> SendResult:
        try:
            url = check_target_url(url, allow_private=self.allow_private)
        except TargetRefused as exc:
            return SendResult(None, None, f"refused: {exc}", False, False)
        # The deadline holds for the whole exchange, whatever the receiver does (a drip of
        # one byte per second included): the watchdog shuts the socket down when it passes.
        with WATCHDOG.guard(self.timeout) as guard:
            try:
                resp = self._session.post(
                    url,
                    data=body,
                    headers=headers,
                    # Per socket operation (connect, TLS handshake, each read); the guard caps the sum.
                    timeout=Timeout(total=self.timeout),
                    allow_redirects=False,
                    stream=True,  # we do not want the body; read a bounded amount below
                )
            except InvalidIPAddress:
                return SendResult(None, None, "refused: the address is private or reserved", False, False)
            except (requests.RequestException, ValueError, OSError) as exc:
                return SendResult(None, None, self._failure(exc, guard.expired), False, False)
            try:
                status = resp.status_code
                retry_after = parse_retry_after(resp.headers.get("Retry-After")) if status in (429, 503) else None
                self._drain(resp, guard.deadline)
            finally:
                resp.close()
        error = f"redirect not followed (HTTP {status})" if 300 <= status < 400 else None
        return SendResult(status, retry_after, error, 200 <= status < 300, status == 410)

    def _failure(self, exc: Exception, expired: bool) -> str:
        if expired or isinstance(exc, requests.Timeout):
            return f"timeout: no complete answer within {self.timeout:g} s"
        if isinstance(exc, requests.exceptions.SSLError):
            return "TLS error: handshake or certificate check failed"
        if isinstance(exc, requests.ConnectionError):
            return "connection failed"
        return "request failed"

    @staticmethod
    def _drain(resp: requests.Response, deadline: float) -> None:
        # Reading a short body to its end returns the connection to the pool;
        # a long or slow one is cut off (close() then drops the connection).
        read = 0
        try:
            for chunk in resp.iter_content(8192):
                read += len(chunk)
                if read > _BODY_READ_LIMIT or time.monotonic() > deadline:
                    return
        except (requests.RequestException, OSError):
            return

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- retries

# Seconds to wait after attempt N (1-based) before attempt N+1; after the last
# step we give up. Modelled on the Standard Webhooks / Svix schedule: attempt 1
# is immediate, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: 8 attempts,
# 99,305 s = about 27.6 hours from the first to the last attempt (before jitter).
RETRY_SCHEDULE: tuple[float, ...] = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
JITTER = 0.10


def next_attempt_delay(attempts_made: int, retry_after: float | None, rng: random.Random | None = None) -> float | None:
    """Seconds to wait before the next attempt, or None to give up.

    ``attempts_made`` counts attempts already made (0 = none yet: go now). A
    Retry-After longer than the scheduled step wins (capped at a day), and jitter
    then only adds time, so we never come back before the receiver asked.
    """
    if attempts_made <= 0:
        return 0.0
    if attempts_made > len(RETRY_SCHEDULE):
        return None
    rng = rng or random
    step = float(RETRY_SCHEDULE[attempts_made - 1])
    if retry_after is not None and retry_after > step:
        wait = min(float(retry_after), MAX_RETRY_AFTER)
        return wait * (1 + rng.uniform(0, JITTER))
    # Jitter spreads retries of many deliveries that failed together.
    return step * (1 + rng.uniform(-JITTER, JITTER))
