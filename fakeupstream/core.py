"""State and behaviour of the fake upstream, following CONTRACT.md's reading of
`POST /api/v1/get-tiktok-user-following`. The HTTP plumbing lives in handler.py."""
from __future__ import annotations

import bisect
import copy
import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from . import deviations
from .accounts import make_account
from .handler import Server
from .wire import API_PATH, JSON_TYPE, Reply, error_reply, json_reply  # noqa: F401 (API_PATH re-exported)

REQUEST_SOURCES = ("MAKE_DOT_COM", "ZAPIER", "API")
MALFORMED_KINDS = ("shape", "not_json", "html", "empty")
# Reported in the X-RateLimit-* headers when no `rate_limit` is set (never enforced).
HEADER_RATE_LIMIT = (1000, 60.0)
SEED_SPACING = 60  # seconds between two seeded follows

MSG_BAD_KEY = "API key is invalid or missing."
MSG_BAD_JSON = "Invalid JSON in request body"
MSG_BAD_HANDLE = "'handle' parameter is required and must be a non-empty string."
MSG_NO_CREDITS = "Insufficient credits. Please top up your account."
MSG_RATE_LIMITED = "Rate limit exceeded. Please try again later."
FAULT_MESSAGES = {
    400: "The following service could not process the handle.",
    401: MSG_BAD_KEY,
    403: MSG_NO_CREDITS,
    429: MSG_RATE_LIMITED,
    500: "An unexpected server error occurred while fetching the TikTok user following: simulated failure",
    502: "Received invalid data structure from following service.",
    503: MSG_RATE_LIMITED,
}


@dataclass(frozen=True)
class RecordedRequest:
    key: str | None  # bearer token as sent (None when absent)
    body: dict | None  # parsed JSON object, None when absent/invalid/not an object
    status: int
    time: float  # arrival, Unix seconds


MALFORMED_REPLIES = {
    "shape": lambda: json_reply(200, {"status": "ok", "data": {"users": []}}),
    "not_json": lambda: Reply(200, b'{"followingList": [{"user": ', {"Content-Type": JSON_TYPE}),
    # What a proxy or CDN in front of the upstream answers: a real HTML page.
    "html": lambda: Reply(
        200,
        b"<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
        {"Content-Type": "text/html; charset=utf-8"},
    ),
    "empty": lambda: Reply(200, b"", {"Content-Type": JSON_TYPE}),
}


@dataclass
class _Fault:
    times: int
    status: int | None = None
    malformed: str | None = None
    hang: float = 0.0
    body: object = None
    headers: dict | None = None


def _is_non_negative_number(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _validation_error(body) -> str | None:
    if not isinstance(body, dict):
        return MSG_BAD_HANDLE
    handle = body.get("handle")
    if not isinstance(handle, str) or not handle.strip():
        return MSG_BAD_HANDLE
    for name in ("count", "minTime"):
        if name in body and not _is_non_negative_number(body[name]):
            return f"'{name}' must be a non-negative number."
    if body.get("requestSource", "API") not in REQUEST_SOURCES:
        return "'requestSource' must be one of " + ", ".join(REQUEST_SOURCES) + "."
    return None


def _bearer_token(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


class FakeDumpling:
    """The fake upstream. Thread-safe; the lock is never held while sleeping."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._stopping = threading.Event()  # wakes sleeping (delayed/hung) requests on stop()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.url: str | None = None
        self.reset()

    # ---- lifecycle -------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> "FakeDumpling":
        if self._server is not None:
            raise RuntimeError("FakeDumpling is already started")
        self._stopping.clear()
        self._server = Server((host, port), self)
        url_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.url = f"http://{url_host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            # A short poll interval makes stop() fast (the default waits up to 0.5 s).
            target=self._server.serve_forever, args=(0.05,), name="fakeupstream", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()  # keep-alive clients must see the upstream go away
        self._thread.join(timeout=5)

    @property
    def accepted(self) -> int:
        """Connections accepted since start (a kept-alive connection counts once)."""
        return self._server.accepted

    def __enter__(self) -> "FakeDumpling":
        return self if self._server is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget everything: keys, handles, faults, the request log, the settings and
        the deviations."""
        with self._lock:
            # Requests still in flight from before a reset (e.g. hung ones) must not leak
            # into the next test's log: each records only if its generation is current.
            self._generation = getattr(self, "_generation", 0) + 1
            self._keys: dict[str, int | None] = {}  # key -> credits left (None = unlimited)
            self._spent: dict[str, int] = {}
            self._handles: dict[str, list[tuple[int, dict]]] = {}  # newest follow first
            self._faults: deque[_Fault] = deque()
            self._log: list[RecordedRequest] = []
            self._windows: dict[str, deque[float]] = {}  # key -> monotonic request times
            self._next_id = 1
            self.delay = 0.0
            self.rate_limit: tuple[int, float] | None = None
            self.default_count = 20
            self.max_count = 100
            self._deviations: frozenset[deviations.Deviation] = frozenset()
            self._min_time_asked: set[str] = set()  # handles already asked with a minTime

    # ---- deviations from the documented behaviour (see deviations.py) -------
    def set_deviations(self, *names: str) -> None:
        """Switch on exactly these deviations (none: the documented behaviour)."""
        chosen = deviations.parse(names)
        with self._lock:
            self._deviations = chosen
            self._min_time_asked = set()

    @property
    def deviations(self) -> list[str]:
        with self._lock:
            return sorted(d.value for d in self._deviations)

    # ---- keys and credits ------------------------------------------------
    def add_key(self, key: str, credits: int | None = None) -> None:
        with self._lock:
            self._keys[key] = credits
            self._spent.setdefault(key, 0)

    def credits_spent(self, key: str | None = None) -> int:
        with self._lock:
            return sum(self._spent.values()) if key is None else self._spent.get(key, 0)

    def credits_by_key(self) -> dict[str, int]:
        with self._lock:
            return dict(self._spent)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._log)

    # ---- who follows whom --------------------------------------------------
    def _new_account(self) -> dict:
        account = make_account(self._next_id)
        self._next_id += 1
        return account

    def seed(self, handle: str, n: int, start_time: int | None = None) -> list[dict]:
        """Make `handle` follow exactly `n` new accounts (replacing what it followed),
        the newest at `start_time` (default: a minute ago), each older by SEED_SPACING."""
        if n < 0:
            raise ValueError("n must be >= 0")
        newest = int(time.time()) - 60 if start_time is None else int(start_time)
        with self._lock:
            items = [(newest - i * SEED_SPACING, self._new_account()) for i in range(n)]
            self._handles[handle.lower()] = items
            return copy.deepcopy([entry for _, entry in items])

    def follow(self, handle: str, account: dict | None = None, at: int | None = None) -> dict:
        """`handle` follows `account` (default: a brand-new one) at time `at`. Following
        an account again moves it to its new time."""
        with self._lock:
            items = self._handles.setdefault(handle.lower(), [])
            if at is None:  # unique and increasing, even within one second
                at = max(int(time.time()), items[0][0] + 1 if items else 0)
            entry = copy.deepcopy(account) if account is not None else self._new_account()
            account_id = str(entry["user"]["id"])
            items[:] = [it for it in items if str(it[1]["user"]["id"]) != account_id]
            # insort_left: among equal times the latest follow comes first.
            bisect.insort_left(items, (int(at), entry), key=lambda it: -it[0])
            return copy.deepcopy(entry)

    def unfollow(self, handle: str, account_id: str) -> bool:
        with self._lock:
            items = self._handles.get(handle.lower(), [])
            before = len(items)
            items[:] = [it for it in items if str(it[1]["user"]["id"]) != str(account_id)]
            return len(items) < before

    def following(self, handle: str) -> list[tuple[int, dict]]:
        with self._lock:
            return copy.deepcopy(self._handles.get(handle.lower(), []))

    # ---- faults ----------------------------------------------------------
    def add_fault(self, times: int = 1, *, status: int | None = None, malformed: str | None = None,
                  hang: float = 0.0, body=None, headers: dict | None = None) -> None:
        """Queue a fault for the next `times` valid API requests: sleep `hang` seconds,
        then answer `status` (documented error body unless `body`), a malformed 200, or
        (hang only) the normal answer. Faults are used up in the order they were added."""
        if not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        if status is not None and not (isinstance(status, int) and 100 <= status <= 599):
            raise ValueError("status must be an HTTP status code")
        if malformed is not None and malformed not in MALFORMED_KINDS:
            raise ValueError(f"malformed must be one of {MALFORMED_KINDS}")
        if not _is_non_negative_number(hang) or (status is None and malformed is None and not hang):
            raise ValueError("a fault needs a status, a malformed kind or a positive hang")
        with self._lock:
            self._faults.append(_Fault(times, status, malformed, float(hang), body, headers))

    def fail_next(self, status: int, times: int = 1, body=None, headers: dict | None = None) -> None:
        self.add_fault(times, status=status, body=body, headers=headers)

    def malformed_next(self, kind: str = "shape", times: int = 1) -> None:
        self.add_fault(times, malformed=kind)

    def hang_next(self, seconds: float, times: int = 1) -> None:
        self.add_fault(times, hang=seconds)

    def _take_fault(self) -> _Fault | None:
        if not self._faults:
            return None
        fault = self._faults[0]
        fault.times -= 1
        if fault.times <= 0:
            self._faults.popleft()
        return fault

    def _fault_reply(self, fault: _Fault, body: dict) -> Reply:
        if fault.malformed:
            return MALFORMED_REPLIES[fault.malformed]()
        if isinstance(fault.body, (str, bytes)):
            raw = fault.body.encode("utf-8") if isinstance(fault.body, str) else fault.body
            reply = Reply(fault.status, raw, {"Content-Type": JSON_TYPE})
        elif fault.body is not None:
            reply = json_reply(fault.status, fault.body)
        elif fault.status == 404:
            reply = error_reply(404, f"Following list not found for user: {body['handle']}")
        else:
            message = FAULT_MESSAGES.get(fault.status, f"Simulated upstream error {fault.status}.")
            reply = error_reply(fault.status, message)
        reply.headers.update({k: str(v) for k, v in (fault.headers or {}).items()})
        return reply

    # ---- the API route ---------------------------------------------------
    def answer(self, authorization: str | None, raw: bytes) -> Reply:
        """Answer one request to API_PATH and record it."""
        arrival = time.time()
        generation = self._generation
        key = _bearer_token(authorization)
        reply, body = self._answer(key, raw)
        with self._lock:
            for name, value in self._rate_headers(key).items():
                reply.headers.setdefault(name, value)  # an injected fault's headers win
            if generation == self._generation:
                self._log.append(RecordedRequest(key, body, reply.status, arrival))
        return reply

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _answer(self, key: str | None, raw: bytes) -> tuple[Reply, dict | None]:
        if self.delay:
            self._sleep(self.delay)
        with self._lock:
            known = key in self._keys
        if not known:
            return error_reply(401, MSG_BAD_KEY), None
        try:
            parsed = json.loads(raw)
        except ValueError:  # includes undecodable bytes
            return error_reply(400, MSG_BAD_JSON), None
        body = parsed if isinstance(parsed, dict) else None
        problem = _validation_error(parsed)
        if problem:
            return error_reply(400, problem), body
        with self._lock:
            fault = self._take_fault()
        if fault:
            if fault.hang:
                self._sleep(fault.hang)
            if fault.status or fault.malformed:
                return self._fault_reply(fault, body), body
        return self._page_reply(key, body), body

    def _window(self, key: str) -> tuple[int, deque[float]]:
        limit, seconds = self.rate_limit or HEADER_RATE_LIMIT
        stamps = self._windows.setdefault(key, deque())
        now = time.monotonic()
        while stamps and stamps[0] <= now - seconds:
            stamps.popleft()
        return int(limit), stamps

    def _rate_headers(self, key: str | None) -> dict[str, str]:
        if key in self._keys:
            limit, stamps = self._window(key)
            remaining = max(0, limit - len(stamps))
        else:
            limit = remaining = int((self.rate_limit or HEADER_RATE_LIMIT)[0])
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining)}

    def _page_reply(self, key: str, body: dict) -> Reply:
        handle = body["handle"]
        with self._lock:
            limit, stamps = self._window(key)
            if self.rate_limit and len(stamps) >= limit:
                return error_reply(503, MSG_RATE_LIMITED)
            stamps.append(time.monotonic())
            credits = self._keys[key]
            if credits is not None and credits <= 0:
                return error_reply(403, MSG_NO_CREDITS)
            items = self._handles.get(handle.lower())
            if items is None:
                return error_reply(404, f"Following list not found for user: {handle}")
            # 0 (like absent) means "no cursor" / "default page size".
            count = min(int(body.get("count") or 0) or self.default_count, self.max_count)
            min_time = body.get("minTime") or None
            first_min_time_ask = min_time is not None and handle.lower() not in self._min_time_asked
            if min_time is not None:
                self._min_time_asked.add(handle.lower())
            if credits is not None:
                self._keys[key] = credits - 1
            self._spent[key] += 1
            # Serialised under the lock so a concurrent follow() cannot change the page.
            return json_reply(200, deviations.page_body(items, count, min_time, self._deviations,
                                                         first_min_time_ask))
