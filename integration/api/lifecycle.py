"""What every request does at its start and at its end, whichever path serves it (Flask's
hooks in app.py, or the action's direct path, integration/api/action_path.py): its id, and
its answer's headers, metrics and log line."""
from __future__ import annotations

import logging
import time
import uuid

from integration.observability import CREDITS_SPENT, HTTP_LATENCY, HTTP_REQUESTS, labelled, log, method_label
from integration.platforms import Platform
from integration.upstream import Meter

logger = logging.getLogger("app")  # the request lines' logger, as before this module
_UNLOGGED = frozenset({"/healthz", "/metrics"})


def request_id(incoming: str) -> str:
    """The caller's X-Request-Id when it is a plain token (it goes into our log lines), else ours."""
    return incoming if incoming.isalnum() and len(incoming) <= 64 else uuid.uuid4().hex


def finish(meter: Meter | None, platform: Platform | None, route: str, method: str, status: int,
           request_id: str, started: float) -> dict[str, str]:
    """The request is answered: unused budget reservations go back, its metrics and its log
    line are written. Returns the headers the answer carries. `route` is the URL rule (a
    bounded label, never the raw path)."""
    headers = {}
    if meter is not None:
        meter.close()  # unused budget reservations go back
        if platform is not None:
            headers.update(meter.headers() if meter.calls else {"X-Credits-Used": "0"})
            if meter.credits:
                labelled(CREDITS_SPENT, platform.value).inc(meter.credits)
    headers["X-Request-Id"] = request_id
    elapsed = time.perf_counter() - started
    method = method_label(method)
    labelled(HTTP_REQUESTS, route, method, str(status)).inc()
    labelled(HTTP_LATENCY, route).observe(elapsed)
    if route not in _UNLOGGED:
        log(logger, logging.INFO, "request", method=method, route=route, status=status, ms=round(elapsed * 1000, 2),
            credits=meter.credits if meter else 0, upstream_calls=meter.calls if meter else 0, request_id=request_id)
    return headers
