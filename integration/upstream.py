"""The one DumplingAI client.

The HTTP exchange is libcurl's (pycurl), one easy handle per calling thread, reused (its
connection kept alive): urllib3 + http.client cost ~0.45 ms of CPU per call in header building
and email-based header parsing, and the deadline watchdog's thread hand-offs ~0.35 ms more
(issue 14; bench/bench_worker_model.py). libcurl bounds the whole exchange itself
(TIMEOUT_MS: headers and body, whatever the upstream does, a server dripping bytes cannot
hold a thread past it), so upstream calls need no watchdog (integration/deadline.py stays for
webhook sends). Answers bounded in bytes (a longer one is malformed); retries with backoff and
jitter only where a retry cannot cost the user twice: 429/502/503 answers (failed requests are
free) and connections that never got an answer. A read timeout is NOT retried: the upstream may
have done (and charged) the work.
"""
from __future__ import annotations

import json
import math
import random
import threading
import time
import weakref
from dataclasses import dataclass, field

import certifi  # installed with requests; its CA bundle, as requests used
import orjson
import pycurl
from marshmallow import ValidationError
from urllib3 import HTTPHeaderDict  # a case-insensitive mapping, as Meter.record and rate-limit reads expect

from integration.errors import UpstreamFailure, kind_for_status
from integration.retry_after import parse_retry_after
from integration.upstream_shape import UpstreamPageSchema

PATH = "/api/v1/get-tiktok-user-following"
RETRY_STATUSES = {429, 502, 503}
# What requests sent by default, so the upstream sees the same request as before; libcurl adds
# Host, Content-Length and (ACCEPT_ENCODING) Accept-Encoding. An empty "Expect:" stops its
# Expect: 100-continue (a round trip more) on a larger body.
_BASE_HEADERS = (b"Content-Type: application/json", b"Accept: */*", b"User-Agent: tiktok-following/1", b"Expect:")
# How an exchange that never reached the upstream's handler ended (UpstreamFailure.detail):
# names, not libcurl's messages (those carry the URL).
_CURL_ERRORS = {pycurl.E_COULDNT_RESOLVE_HOST: "DNS failure", pycurl.E_COULDNT_CONNECT: "connection refused",
                pycurl.E_SSL_CONNECT_ERROR: "TLS handshake failed", pycurl.E_PEER_FAILED_VERIFICATION:
                "TLS certificate refused", pycurl.E_GOT_NOTHING: "closed without an answer",
                pycurl.E_RECV_ERROR: "connection reset", pycurl.E_SEND_ERROR: "send failed"}
_page_schema = UpstreamPageSchema()


@dataclass(frozen=True)
class UpstreamPage:
    accounts: tuple[dict, ...]  # flat accounts, newest follow first
    max_cursor: int | None  # None when the upstream left it out
    min_cursor: int | None
    has_more: bool
    total: int | None


@dataclass(frozen=True)
class RawAnswer:
    """One 200 as it came, unparsed (for `python -m integration.probe`)."""

    body: object  # the decoded JSON, whatever its shape; None when the body is not JSON
    headers: dict
    seconds: float  # from sending the request to having the whole body


@dataclass
class Meter:
    """What one of our answers cost: upstream calls, credits, latest rate-limit headers.

    With an `account` (integration.ledger.Account), every credit goes to the ledger as it
    is spent (a refresh's credits go in its commit instead: RefreshMeter), and under a
    budget every call first reserves one (`before_call`); a failed call's reservation is
    kept for the next attempt, `close()` gives back the rest."""

    calls: int = 0
    credits: int = 0
    rate_limit: dict = field(default_factory=dict)
    account: object | None = None
    _spare: int = 0  # reservations taken and not yet used by a call
    _held: int = 0   # reservations used by calls in flight
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def before_call(self) -> None:
        """Raises ledger.BudgetReached when the budget has no credit left for this call."""
        if self.account is None or self.account.budget is None:
            return
        with self._lock:
            if self._spare:
                self._spare -= 1
                self._held += 1
                return
        self.account.reserve()
        with self._lock:
            self._held += 1

    def hold(self, reservations: int) -> None:
        """Reservations taken in the caller's own transaction (a refresh's claim), for the
        calls to come."""
        with self._lock:
            self._spare += reservations

    def record(self, status: int | None, headers, *, write: bool = True) -> bool:
        """Counts one call. A 200 is written to the ledger at once unless `write` is False
        (the caller writes it: RefreshMeter). Returns whether the call used a reservation."""
        with self._lock:
            self.calls += 1
            reserved = self._held > 0
            if reserved:
                self._held -= 1
            if status == 200:
                self.credits += 1
            elif reserved:
                self._spare += 1  # a failed call is free: its credit stays reserved for a retry
            if headers is not None:
                for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining"):
                    if headers.get(name) is not None:
                        self.rate_limit[name] = headers[name]
        if status == 200 and self.account is not None and write:
            self.account.spent(reserved)
        return reserved

    def close(self) -> None:
        """The request is over: unused reservations go back to the budget."""
        with self._lock:
            spare, self._spare = self._spare, 0
        if spare and self.account is not None:
            self.account.give_back(spare)

    def headers(self) -> dict:
        out = {"X-Credits-Used": str(self.credits)}
        out.update(self.rate_limit)
        return out


class RefreshMeter:
    """One refresh's share of its request's Meter. Its credits are not written call by call
    but by the refresh's commit, with the journal they paid for (one transaction per page
    fewer): `pending()` before it, `written()` once it committed; a refresh that does not commit writes them
    at once (watches._refresh). The request's Meter still counts every call (X-Credits-Used,
    budget reservations)."""

    def __init__(self, meter: Meter):
        self.meter = meter
        self.credits = 0      # this refresh's 200s
        self._credits = 0     # ... not written to the ledger yet
        self._reserved = 0    # ... of which used a reservation (turned into credits when written)

    @property
    def account(self):
        return self.meter.account

    def before_call(self) -> None:
        self.meter.before_call()

    def record(self, status: int | None, headers) -> None:
        reserved = self.meter.record(status, headers, write=False)
        if status == 200:
            self.credits += 1
            self._credits += 1
            self._reserved += reserved

    def pending(self) -> tuple[int, int]:
        """(credits, reservations they used) not written to the ledger yet."""
        return self._credits, self._reserved

    def written(self, spent: tuple[int, int]) -> None:
        """`spent` (a `pending()`) is in the ledger now: its transaction committed."""
        self._credits -= spent[0]
        self._reserved -= spent[1]


class DumplingClient:
    def __init__(self, base_url: str, *, connect_timeout: float = 3.05, read_timeout: float = 12.0,
                 total_seconds: float = 25.0, retries: int = 2, max_bytes: int = 5 * 1024 * 1024,
                 on_call=None, sleep=time.sleep, ca_file: str | None = None):
        self.url = base_url.rstrip("/") + PATH
        self.ca_file = ca_file or certifi.where()  # the bundle requests used, not the system's
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_seconds = total_seconds
        self.retries = retries
        self.max_bytes = max_bytes
        self._on_call = on_call or (lambda outcome: None)  # metrics hook: outcome label
        self._sleep = sleep
        # A handle (and its kept-alive connection) per calling thread: no pool to size or lock.
        # A thread that ends drops its handle (the local), which closes the connection; the
        # set, weak for that reason, is what close() closes.
        self._local = threading.local()
        self._handles: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.Lock()

    def fetch_page(self, api_key: str, handle: str, request_source: str, *,
                   count: int | None = None, min_time: int | None = None,
                   meter: Meter | None = None, budget: float | None = None) -> UpstreamPage:
        # `budget`: the caller's remaining wall-clock time; it can only shorten total_seconds.
        deadline = time.monotonic() + (self.total_seconds if budget is None else min(self.total_seconds, max(budget, 0.5)))
        payload, authorization = _request(api_key, handle, request_source, count, min_time)
        attempt = 0
        while True:
            attempt += 1
            if meter is not None:
                meter.before_call()  # the daily budget: no credit left, no call
            try:
                status, headers, content = self._exchange(authorization, payload, deadline, meter)
            except UpstreamFailure as exc:
                if exc.kind != "unreachable":  # sent and maybe charged, or refused as too large
                    raise
                failure, retry_after = exc, None
            else:
                rate = {k: headers[k] for k in ("X-RateLimit-Limit", "X-RateLimit-Remaining") if k in headers}
                if status == 200:
                    self._record(meter, 200, headers, "ok")
                    return self._parse(content, rate)
                self._record(meter, status, headers, f"http_{status}")
                retry_after = parse_retry_after(headers.get("Retry-After"))
                failure = UpstreamFailure(kind_for_status(status), status, _error_text(content, status),
                                          retry_after, rate)
                if status not in RETRY_STATUSES:
                    raise failure
            if attempt > self.retries:
                raise failure
            delay = retry_after if retry_after is not None else 0.25 * (2 ** (attempt - 1))
            delay *= random.uniform(1.0, 1.25)  # jitter: spread out synchronized retries
            if time.monotonic() + delay >= deadline - 1.0:
                raise failure  # no time left for another attempt within the overall bound
            self._sleep(delay)

    def _lane(self) -> "_Lane":
        lane = getattr(self._local, "lane", None)
        if lane is None:
            lane = self._local.lane = _Lane(self.url, self.ca_file)
            with self._lock:
                self._handles.add(lane.curl)
        return lane

    def _exchange(self, authorization: bytes, payload: bytes, deadline: float, meter):
        """One POST, bounded by `deadline` as a whole: (status, headers, body). A failure is
        recorded (meter, on_call) and raised as UpstreamFailure."""
        lane = self._lane()
        curl = lane.curl
        remaining = deadline - time.monotonic()
        # Rounded up: libcurl must not give up before the deadline (a cut is told by the clock).
        curl.setopt(pycurl.TIMEOUT_MS, max(100, math.ceil(remaining * 1000)))  # 0 would mean no bound
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, math.ceil(min(self.connect_timeout, remaining) * 1000)))
        curl.setopt(pycurl.MAXFILESIZE_LARGE, self.max_bytes)  # a declared Content-Length over it: refused at once
        curl.setopt(pycurl.HTTPHEADER, [*_BASE_HEADERS, authorization])
        curl.setopt(pycurl.POSTFIELDS, payload)
        answer = lane.answer
        answer.start(self.max_bytes, self.read_timeout)
        try:
            curl.perform()
        except pycurl.error as exc:
            raise self._failure(lane, exc.args[0], deadline, meter) from None
        return curl.getinfo(pycurl.RESPONSE_CODE), _headers(answer.head), b"".join(answer.chunks)

    def _failure(self, lane: "_Lane", code: int, deadline: float, meter) -> UpstreamFailure:
        """The error table for an exchange libcurl ended: what was sent and what came back
        tell whether the upstream may have done (and charged) the work."""
        curl = lane.curl
        answer = lane.answer
        status = curl.getinfo(pycurl.RESPONSE_CODE) or None
        if answer.over or code == pycurl.E_FILESIZE_EXCEEDED:
            self._record(meter, status, _headers(answer.head), "too_large")
            return UpstreamFailure("malformed", status, detail=f"answer over {self.max_bytes} bytes")
        sent = curl.getinfo(pycurl.REQUEST_SIZE) > 0
        answered = bool(answer.head) and answer.head[-1] in (b"\r\n", b"\n")  # the whole head came
        timed_out = code == pycurl.E_OPERATION_TIMEDOUT or answer.stalled
        if timed_out and time.monotonic() >= deadline:
            # Cut by the deadline, not refused: the upstream may have charged.
            self._record(meter, None, None, "timeout" if sent else "unreachable")
            return UpstreamFailure("timeout", status if answered else None, detail="deadline")
        if answered:
            # Cut off mid-body (read timeout, reset, a broken encoding): maybe charged; never retried.
            self._record(meter, None, None, "timeout" if timed_out else "malformed")
            return UpstreamFailure("timeout" if timed_out else "malformed", status, detail="answer cut off")
        if timed_out and sent:
            # Sent, no answer in time: the upstream may have done (and charged) the work.
            self._record(meter, None, None, "timeout")
            return UpstreamFailure("timeout", detail="read timeout")
        # Never reached the upstream's handler (refused, DNS, connect timeout, TLS, reset before an answer).
        self._record(meter, None, None, "unreachable")
        return UpstreamFailure("unreachable", detail="connect timeout" if timed_out else
                               _CURL_ERRORS.get(code, f"curl error {code}"))

    def _record(self, meter, status, headers, outcome):
        if meter is not None:
            meter.record(status, headers)
        self._on_call(outcome)

    def _parse(self, content: bytes, rate) -> UpstreamPage:
        try:
            data = _page_schema.load(_decode(content))
            accounts = data["followingList"]  # flat accounts (upstream_shape.UpstreamEntries)
        except (ValueError, ValidationError, KeyError, TypeError) as exc:
            raise UpstreamFailure("malformed", 200, detail=type(exc).__name__, rate_limit=rate)
        return UpstreamPage(accounts, data["maxCursor"], data["minCursor"], data["hasMore"], data.get("total"))

    def fetch_raw(self, api_key: str, handle: str, request_source: str, *,
                  count: int | None = None, min_time: int | None = None) -> RawAnswer:
        """One attempt (no retry) of the same request as fetch_page, answered unparsed: the
        probe must see what parsing hides (absent cursors, numeric ids, missing fields).
        A non-200 raises UpstreamFailure as fetch_page does."""
        payload, authorization = _request(api_key, handle, request_source, count, min_time)
        started = time.monotonic()
        status, headers, content = self._exchange(authorization, payload, started + self.total_seconds, None)
        seconds = time.monotonic() - started
        headers = dict(headers)
        if status != 200:
            self._on_call(f"http_{status}")
            raise UpstreamFailure(kind_for_status(status), status, _error_text(content, status),
                                  parse_retry_after(headers.get("Retry-After")))
        self._on_call("ok")
        try:
            parsed = _decode(content)
        except ValueError:
            parsed = None
        return RawAnswer(parsed, headers, seconds)

    def close(self):
        """Closes every handle (and connection) this client made; a later call makes new ones."""
        with self._lock:
            handles, self._handles = list(self._handles), weakref.WeakSet()
            self._local = threading.local()
        for curl in handles:
            try:
                curl.close()
            except pycurl.error:  # in another thread's perform(): freed when that thread drops it
                pass


class _Answer:
    """What libcurl's callbacks fill for one exchange: the head's lines, the body (decoded, up to
    a cap), and when bytes last moved (the read timeout). Holds no reference to the handle (no
    cycle: a dropped handle is freed, and its connection closed, at once)."""

    __slots__ = ("head", "chunks", "size", "cap", "over", "patience", "moved", "since", "stalled")

    def __init__(self):
        self.head: list[bytes] = []  # the header lines as they came, status line first

    def start(self, cap: int, patience: float) -> None:
        self.head.clear()
        self.chunks, self.size, self.cap, self.over = [], 0, cap, False
        self.patience, self.moved, self.since, self.stalled = patience, -1, time.monotonic(), False

    def write(self, data: bytes):
        self.size += len(data)  # decoded bytes: a compressed bomb is counted unpacked
        if self.size > self.cap:
            self.over = True
            return 0  # libcurl stops the transfer (CURLE_WRITE_ERROR) and drops the connection
        self.chunks.append(data)
        return None

    def progress(self, _down_total, down, _up_total, up) -> int:
        """The read timeout: once the request is going out, no byte sent or received (header
        lines count, not their bytes: libcurl tells only the body's) for `patience` seconds
        ends the exchange (CURLE_ABORTED_BY_CALLBACK).
        libcurl's LOW_SPEED_TIME is no such bound: it averages over a 5 s window, so with a
        1 byte/s limit it fired up to ~6 s late (a read timeout of 1 s ended after 7 s)."""
        moved = down + up + len(self.head)
        now = time.monotonic()
        if moved != self.moved or not up:  # before the request goes out, CONNECTTIMEOUT_MS bounds it
            self.moved, self.since = moved, now
        elif now - self.since >= self.patience:
            self.stalled = True
            return 1
        return 0


class _Lane:
    """One thread's easy handle, its options set once, and what its callbacks fill."""

    def __init__(self, url: str, ca_file: str):
        self.answer = answer = _Answer()
        curl = self.curl = pycurl.Curl()
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.NOSIGNAL, 1)  # threads: no SIGALRM for DNS timeouts
        curl.setopt(pycurl.PROXY, "")  # no proxy from the environment (as requests' trust_env=False did)
        curl.setopt(pycurl.NOPROXY, "*")
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)  # what the upstream saw before (no h2 via ALPN)
        curl.setopt(pycurl.CAINFO, ca_file)
        curl.setopt(pycurl.ACCEPT_ENCODING, "gzip, deflate")  # sent, and decoded by libcurl
        curl.setopt(pycurl.HEADERFUNCTION, answer.head.append)
        curl.setopt(pycurl.WRITEFUNCTION, answer.write)
        curl.setopt(pycurl.NOPROGRESS, 0)
        curl.setopt(pycurl.XFERINFOFUNCTION, answer.progress)


def _request(api_key, handle, request_source, count, min_time) -> tuple[bytes, bytes]:
    """The request's body and Authorization line."""
    body = {"handle": handle, "requestSource": request_source}
    if count is not None:
        body["count"] = count
    if min_time is not None:
        body["minTime"] = min_time
    if not api_key.isprintable():
        # libcurl sends header lines as given: a line break would smuggle headers of its own.
        raise UpstreamFailure("unauthorized", detail="the API key holds characters a header cannot carry")
    return orjson.dumps(body), b"Authorization: Bearer " + api_key.encode()


def _headers(lines: list[bytes]) -> HTTPHeaderDict:
    """The last head's header lines as a case-insensitive mapping (an interim 1xx head is dropped)."""
    headers = HTTPHeaderDict()
    for line in lines:
        if line.startswith(b"HTTP/"):
            headers = HTTPHeaderDict()
            continue
        name, colon, value = line.decode("latin-1").partition(":")
        if colon:
            headers.add(name.strip(), value.strip())
    return headers


def _decode(content: bytes):
    """JSON as requests' `.json()` read it: orjson first (a fraction of the CPU), the json module
    for what orjson refuses and json accepts (NaN, integers past 64 bits, UTF-16)."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


def _error_text(content: bytes, status: int) -> str:
    try:
        message = _decode(content).get("error")
        if isinstance(message, str):
            return message[:200]
    except (ValueError, AttributeError):
        pass
    return f"status {status}"
