"""Structured JSON logs (with a request id, API keys redacted) and Prometheus metrics."""
from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time

import orjson
from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter("http_requests_total", "Answers by route and status", ["route", "method", "status"])
HTTP_LATENCY = Histogram("http_request_duration_seconds", "Answer latency by route", ["route"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
UPSTREAM_CALLS = Counter("upstream_calls_total", "DumplingAI calls by outcome", ["outcome"])
CREDITS_SPENT = Counter("upstream_credits_spent_total", "DumplingAI credits spent (successful calls)", ["platform"])
DETECTION_SAFE_MODE = Counter("detection_safe_mode_total",
                               "Refreshes whose upstream pages broke the documented paging (detection.SafeMode)",
                               ["reason"])
DETECTION_TRUNCATED = Counter("detection_truncated_total", "Refreshes that hit the page cap and emitted only the newest follows")
EVENTS_DETECTED = Counter("follow_events_total", "New follows written to the journal")
WEBHOOK_DELIVERIES = Counter("webhook_deliveries_total", "Webhook delivery attempts by outcome", ["outcome"])

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """A metric/log label from a bounded set: any other method a client sends is "other"."""
    return method if method in _METHODS else "other"


@functools.lru_cache(maxsize=1024)  # label values come from bounded sets: the cache holds them all
def labelled(metric, *values: str):
    """`metric.labels(*values)`, looked up once: prometheus_client checks and converts the
    values and takes a lock on every `labels()` call, several times per request."""
    return metric.labels(*values)


# Anything that looks like a bearer token or an API key assignment.
_SECRET_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"),
    re.compile(r"(?i)((?:api[_-]?key|authorization|secret|apiKey)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"),
    re.compile(r"whsec_[A-Za-z0-9+/=]+"),
]


# A word each pattern needs (case-insensitive; "api_key", "apiKey"... all hold "key"). An ASCII
# line holding none of them cannot match, and is not scanned: the patterns' case-insensitive
# alternation cost ~10 us per request line.
_SECRET_WORDS = ("bearer", "key", "authorization", "secret", "whsec_")


def redact(text: str) -> str:
    if text.isascii():  # (?i) matches some non-ASCII letters to ASCII ones (the long s to s)
        lowered = text.lower()
        if not any(word in lowered for word in _SECRET_WORDS):
            return text
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update(getattr(record, "fields", {}))
        if "request_id" not in payload:  # log() adds it; a record from elsewhere is looked up here
            request_id = _current_request_id()
            if request_id:
                payload["request_id"] = request_id
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        # Redact last, over the whole line: no code path can leak a key into the logs.
        return redact(_dumps(payload))


def _dumps(payload: dict) -> str:
    """One JSON line, ASCII as json.dumps writes it; by orjson (a fraction of the CPU, once per
    request) unless the line holds other characters (json escapes them) or orjson refuses it
    (an integer past 64 bits, a key that is not a string): logging must never fail."""
    try:
        line = orjson.dumps(payload, default=str).decode()
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(payload, default=str)
    return line if line.isascii() else json.dumps(payload, default=str)


def _current_request_id() -> str | None:
    try:
        from flask import g, has_request_context
        return g.get("request_id") if has_request_context() else None
    except Exception:  # noqa: BLE001 - logging must never fail
        return None


def configure_logging(level: str = "INFO") -> None:
    """Called by the process entry points (the app factory, the worker), never at import time."""
    root = logging.getLogger()
    root.setLevel(level)
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    # urllib3 logs full URLs and headers at debug; keep it quiet.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def log(logger: logging.Logger, level: int, msg: str, **fields) -> None:
    if "request_id" not in fields:  # the action's direct path passes it: it has no Flask context
        request_id = _current_request_id()  # taken now: a handler may format the record later
        if request_id:
            fields["request_id"] = request_id
    logger.log(level, msg, extra={"fields": fields})
