"""The action, `POST /v1/<platform>/following`, served without Flask's per-request machinery.

Why: Flask, flask-smorest and werkzeug's request, response and context objects cost ~0.2 ms
of CPU on every action call, a fifth of what the service adds over calling DumplingAI
directly (issue 14 item 2; bench/bench_overhead.py, docs/SCALING.md "The action's overhead").

This path serves only the plain case, and with the view's own functions (`caller_for`,
`list_for`, `lifecycle`); everything else is Flask's, so every rule stays in one place:
- a request that is not plain (not a JSON object of a declared length within MAX_BODY_BYTES,
  or a body the schema refuses) goes to Flask whole, before anything is done for it, its body
  replayed: Flask answers it as it answers every route;
- an exception once the work began (a missing or refused key, a bad budget header, an
  upstream failure, the budget reached, the database down, a bug) is answered by Flask's own
  error handlers and after-request hook, in a request context made for it that holds this
  request's meter and caller: the same answer, headers, metrics and log line as the view's.
ACTION_FAST_PATH=0 turns this path off (every call then goes through the view).
"""
from __future__ import annotations

import io
import time

import orjson
from flask import Flask, g

from integration import errors
from integration.api import caller_for, lifecycle
from integration.api.platform_routes import Following, list_for
from integration.ledger import Account
from integration.platforms import Platform
from integration.services import Services
from integration.upstream import Meter
from schemas.following import FollowingRequestSchema

_BUDGET = "HTTP_" + errors.BUDGET_HEADER.upper().replace("-", "_")  # its WSGI environ key


class ActionPath:
    """A WSGI middleware in front of the Flask app (`app.wsgi_app`)."""

    def __init__(self, app: Flask, svc: Services, max_body_bytes: int):
        self.app, self.flask_wsgi, self.svc, self.max_body_bytes = app, app.wsgi_app, svc, max_body_bytes
        self.schema = FollowingRequestSchema()
        # The view's own URL rule: its label for the metrics and the log, and one path per platform.
        rule = next(r for r in app.url_map.iter_rules()
                    if getattr(app.view_functions[r.endpoint], "view_class", None) is Following)
        self.route = rule.rule
        adapter = app.url_map.bind("localhost")
        self.paths = {adapter.build(rule.endpoint, {"platform": p}, method="POST"): p for p in Platform}

    def __call__(self, environ, start_response):
        platform = self.paths.get(environ.get("PATH_INFO")) if environ.get("REQUEST_METHOD") == "POST" else None
        if platform is None:
            return self.flask_wsgi(environ, start_response)
        started = time.perf_counter()
        raw = self._plain_body(environ)
        if raw is None:
            return self.flask_wsgi(environ, start_response)
        try:
            body = orjson.loads(raw)
            args = self.schema.load(body) if type(body) is dict else None
        except Exception:  # noqa: BLE001 - Flask judges the body again and answers as the view does
            args = None  # (a stricter parser than json's may have refused it)
        if args is None:
            environ["wsgi.input"] = io.BytesIO(raw)
            return self.flask_wsgi(environ, start_response)
        request_id = lifecycle.request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        meter, caller = Meter(), None
        try:
            caller = caller_for(self.svc, environ.get("HTTP_AUTHORIZATION", ""), environ.get(_BUDGET, ""),
                                environ.get("REMOTE_ADDR"))
            meter.account = Account.for_owner(self.svc, caller.owner, caller.budget)
            answer = orjson.dumps(list_for(self.svc, caller, platform, args, meter))
            headers = lifecycle.finish(meter, platform, self.route, "POST", 200, request_id, started)
        except Exception as exc:  # noqa: BLE001 - every exception is answered by Flask's handlers
            environ["wsgi.input"] = io.BytesIO(raw)
            return self._flask_answers(exc, environ, start_response, started, request_id, meter, caller)
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer))),
                                  *headers.items()])
        return [answer]

    def _plain_body(self, environ) -> bytes | None:
        """The body, when it is declared JSON, of a declared length within the limit and not
        chunked; else None, and nothing is read (Flask reads and judges it)."""
        length = environ.get("CONTENT_LENGTH", "")
        if (environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json"
                or not (length.isascii() and length.isdigit() and len(length) <= 9)  # Flask's 413 past it
                or "HTTP_TRANSFER_ENCODING" in environ):
            return None
        length = int(length)
        return environ["wsgi.input"].read(length) if 0 < length <= self.max_body_bytes else None

    def _flask_answers(self, exc: Exception, environ, start_response, started: float, request_id: str,
                       meter: Meter, caller):
        """`exc` answered as the view's exception would be: Flask's error handler for it, then
        its after-request hook (the answer's headers, the metrics, the log line)."""
        with self.app.request_context(environ):
            g.started, g.request_id, g.meter = started, request_id, meter
            if caller is not None:
                g.caller = caller  # an upstream 401 forgets this owner's cached auth check
            response = self.app.finalize_request(self.app.handle_user_exception(exc), from_error_handler=True)
        return response(environ, start_response)
