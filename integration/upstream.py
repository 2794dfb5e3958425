"""The one DumplingAI client.

Pooled urllib3 connections (not requests: its per-call preparation - URL parsing, settings
merging, hooks - was 0.45 ms of CPU and 0.8 ms of wall time per call here, more than half the
client's cost; bench/bench_overhead.py, docs/SCALING.md "The action's overhead"); per-attempt timeouts inside an overall deadline that leaves room in
Zapier's 30 s, that holds across headers and body whatever the upstream does (a server
dripping bytes cannot hold a thread past it: integration/deadline.py, as for webhook sends); answers bounded in
bytes (a longer one is malformed); retries with backoff and jitter only where a retry cannot cost the user
twice: 429/502/503 answers (failed requests are free) and connections that never got
established. A read timeout is NOT retried: the upstream may have done (and charged)
the work.
"""
from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field

import orjson
import urllib3
from marshmallow import ValidationError
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError
from urllib3.util import parse_url

from integration.accounts import flatten
from integration.deadline import WATCHDOG, deadline_pool_manager
from integration.errors import UpstreamFailure, kind_for_status
from integration.retry_after import parse_retry_after
from integration.upstream_shape import UpstreamPageSchema

PATH = "/api/v1/get-tiktok-user-following"
RETRY_STATUSES = {429, 502, 503}
# What requests sent by default, so the upstream sees the same request as before.
_BASE_HEADERS = {"Content-Type": "application/json", "Accept": "*/*", "Accept-Encoding": "gzip, deflate",
                 "User-Agent": "tiktok-following/1"}
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
                 total_seconds: float = 25.0, retries: int = 2, pool_size: int = 64,
                 max_bytes: int = 5 * 1024 * 1024, on_call=None, sleep=time.sleep):
        self.url = base_url.rstrip("/") + PATH
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.total_seconds = total_seconds
        self.retries = retries
        self.max_bytes = max_bytes
        self._on_call = on_call or (lambda outcome: None)  # metrics hook: outcome label
        self._sleep = sleep
        # No proxy from the environment (as before, requests' trust_env=False); the watchdog
        # can cut an exchange past its deadline.
        self.pool = deadline_pool_manager(num_pools=4, maxsize=pool_size)
        # The one host's connection pool, looked up once: PoolManager.urlopen parses the URL and
        # normalises a pool key on every call (docs/SCALING.md "The action's overhead").
        self._host_pool = self.pool.connection_from_url(self.url)
        self._request_uri = parse_url(self.url).request_uri

    def fetch_page(self, api_key: str, handle: str, request_source: str, *,
                   count: int | None = None, min_time: int | None = None,
                   meter: Meter | None = None, budget: float | None = None) -> UpstreamPage:
        # `budget`: the caller's remaining wall-clock time; it can only shorten total_seconds.
        deadline = time.monotonic() + (self.total_seconds if budget is None else min(self.total_seconds, max(budget, 0.5)))
        with WATCHDOG.guard(deadline - time.monotonic()) as guard:  # every attempt, headers and body
            try:
                return self._fetch(api_key, handle, request_source, count, min_time, meter, deadline)
            except UpstreamFailure as failure:
                if guard.expired:  # cut by the deadline, not refused: the upstream may have charged
                    raise UpstreamFailure("timeout", failure.upstream_status, detail="deadline",
                                          rate_limit=failure.rate_limit) from None
                raise

    def _fetch(self, api_key, handle, request_source, count, min_time, meter, deadline) -> UpstreamPage:
        body = {"handle": handle, "requestSource": request_source}
        if count is not None:
            body["count"] = count
        if min_time is not None:
            body["minTime"] = min_time
        payload = orjson.dumps(body)
        headers = {**_BASE_HEADERS, "Authorization": f"Bearer {api_key}"}
        attempt = 0
        while True:
            attempt += 1
            if meter is not None:
                meter.before_call()  # the daily budget: no credit left, no call
            remaining = deadline - time.monotonic()
            timeout = urllib3.Timeout(connect=min(self.connect_timeout, remaining),
                                      read=max(0.1, min(self.read_timeout, remaining)))
            try:
                response = self._host_pool.urlopen("POST", self._request_uri, body=payload, headers=headers,
                                                   timeout=timeout, retries=False, redirect=False,
                                                   preload_content=False)
            except ReadTimeoutError:
                # Sent, no answer in time: the upstream may have done (and charged) the work.
                self._record(meter, None, None, "timeout")
                raise UpstreamFailure("timeout", detail="read timeout")
            except (HTTPError, OSError) as exc:
                # Never reached the upstream's handler (refused, connect timeout, reset, TLS).
                connect_timeout = isinstance(exc, ConnectTimeoutError) and not isinstance(exc, NewConnectionError)
                failure = UpstreamFailure("unreachable", detail="connect timeout" if connect_timeout else type(exc).__name__)
                self._record(meter, None, None, "unreachable")
                retry_after = None
            else:
                content = self._read_capped(response, meter)
                rate = {k: response.headers[k] for k in ("X-RateLimit-Limit", "X-RateLimit-Remaining") if k in response.headers}
                if response.status == 200:
                    self._record(meter, 200, response.headers, "ok")
                    return self._parse(content, rate)
                self._record(meter, response.status, response.headers, f"http_{response.status}")
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                failure = UpstreamFailure(kind_for_status(response.status), response.status,
                                          _error_text(content, response.status), retry_after, rate)
                if response.status not in RETRY_STATUSES:
                    raise failure
            if attempt > self.retries:
                raise failure
            delay = retry_after if retry_after is not None else 0.25 * (2 ** (attempt - 1))
            delay *= random.uniform(1.0, 1.25)  # jitter: spread out synchronized retries
            if time.monotonic() + delay >= deadline - 1.0:
                raise failure  # no time left for another attempt within the overall bound
            self._sleep(delay)

    def _read_capped(self, response, meter) -> bytes:
        """The body (at most max_bytes, by the deadline); the connection goes back to the pool."""
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise _TooLarge
            if declared.isdigit() and "Content-Encoding" not in response.headers:
                # Its size is known and within the bound, and nothing is unpacked: one read of
                # exactly that length (the chunk loop below cost ~3 % of the action's CPU).
                content = response.read(decode_content=False)
                response.release_conn()
                return content
            chunks, size = [], 0
            for chunk in response.stream(64 * 1024, decode_content=True):  # a compressed bomb is counted unpacked
                size += len(chunk)
                if size > self.max_bytes:
                    raise _TooLarge
                chunks.append(chunk)
            response.release_conn()
            return b"".join(chunks)
        except _TooLarge:
            _discard(response)
            self._record(meter, response.status, response.headers, "too_large")
            raise UpstreamFailure("malformed", response.status, detail=f"answer over {self.max_bytes} bytes")
        except (HTTPError, OSError) as exc:
            # Cut off mid-body (deadline, reset): the upstream may have charged; never retried.
            _discard(response)
            timed_out = isinstance(exc, ReadTimeoutError) or "timed out" in str(exc) or "deadline" in str(exc)
            self._record(meter, None, None, "timeout" if timed_out else "malformed")
            raise UpstreamFailure("timeout" if timed_out else "malformed", response.status,
                                  detail="answer cut off")

    def _record(self, meter, status, headers, outcome):
        if meter is not None:
            meter.record(status, headers)
        self._on_call(outcome)

    def _parse(self, content: bytes, rate) -> UpstreamPage:
        try:
            data = _page_schema.load(_decode(content))
            accounts = tuple(flatten(entry) for entry in data["followingList"])
        except (ValueError, ValidationError, KeyError, TypeError) as exc:
            raise UpstreamFailure("malformed", 200, detail=type(exc).__name__, rate_limit=rate)
        return UpstreamPage(accounts, data["maxCursor"], data["minCursor"], data["hasMore"], data.get("total"))

    def fetch_raw(self, api_key: str, handle: str, request_source: str, *,
                  count: int | None = None, min_time: int | None = None) -> RawAnswer:
        """One attempt (no retry) of the same request as fetch_page, answered unparsed: the
        probe must see what parsing hides (absent cursors, numeric ids, missing fields).
        A non-200 raises UpstreamFailure as fetch_page does."""
        body = {"handle": handle, "requestSource": request_source}
        body.update({k: v for k, v in (("count", count), ("minTime", min_time)) if v is not None})
        headers = {**_BASE_HEADERS, "Authorization": f"Bearer {api_key}"}
        started = time.monotonic()
        try:
            response = self.pool.urlopen("POST", self.url, body=orjson.dumps(body), headers=headers, retries=False,
                                         redirect=False, timeout=urllib3.Timeout(connect=self.connect_timeout,
                                                                                 read=self.read_timeout))
        except (ConnectTimeoutError, ReadTimeoutError) as exc:  # NewConnectionError is a ConnectTimeoutError
            kind = "unreachable" if isinstance(exc, NewConnectionError) else "timeout"
            self._on_call(kind)
            raise UpstreamFailure(kind, detail=type(exc).__name__) from None
        except (HTTPError, OSError) as exc:
            self._on_call("unreachable")
            raise UpstreamFailure("unreachable", detail=type(exc).__name__) from None
        seconds = time.monotonic() - started
        headers = dict(response.headers)
        if response.status != 200:
            self._on_call(f"http_{response.status}")
            raise UpstreamFailure(kind_for_status(response.status), response.status,
                                  _error_text(response.data, response.status),
                                  parse_retry_after(headers.get("Retry-After")))
        self._on_call("ok")
        try:
            parsed = _decode(response.data)
        except ValueError:
            parsed = None
        return RawAnswer(parsed, headers, seconds)

    def close(self):
        self.pool.clear()


class _TooLarge(Exception):
    pass


def _discard(response) -> None:
    """Close a half-read answer's connection and give its slot back to the pool (closed: the
    next use reconnects), as requests' Response.close() did."""
    response.close()
    response.release_conn()


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
