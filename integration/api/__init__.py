"""HTTP layer: flask-smorest blueprints, one per area, and what they share.

- `key_required`: the views that act for a DumplingAI key say so; the decorator reads the
  key once and passes the caller (key + owner hash) to the view, as Flask's tutorial does
  with `login_required`.
- `Blueprint.documented_errors`: the error answers an operation documents.
- `Api.handle_http_exception`: flask-smorest's own extension point for HTTP errors; every
  error answer, ours or werkzeug's, leaves as the one JSON shape of `integration/errors.py`.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

import flask_smorest
import orjson
from flask import Flask, Response, current_app, g, jsonify, request
from flask_smorest.arguments import ArgumentsMixin
from marshmallow import ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from integration import authcheck, errors
from integration.errors import ApiError, UpstreamFailure
from integration.ledger import Account, BudgetReached
from integration.observability import log
from integration.services import Services

logger = logging.getLogger("app")
MAX_KEY_LENGTH = 512
MAX_BUDGET = 99_999_999  # 8 digits: the documented pattern


def services() -> Services:
    return current_app.extensions["tiktok_following"]


@dataclass(frozen=True)
class Caller:
    """Who a request acts for. `key` is the DumplingAI key: never logged, never stored in plain text."""

    key: str = field(repr=False)  # a Caller in a traceback or a log line must not show the key
    owner: str = ""                # HMAC of the key (security.key_hash): what rows are scoped by
    budget: int | None = None      # X-Daily-Credit-Budget, when the request carries one


def budget_from(raw: str) -> int | None:
    """The X-Daily-Credit-Budget header's value."""
    raw = raw.strip()
    if not raw:
        return None  # absent, or empty (an app's optional connection field left blank): no budget
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_BUDGET:
        raise errors.invalid_budget_header()
    return int(raw)


def caller_for(svc: Services, authorization: str, budget_header: str, address: str | None) -> Caller:
    """Who a request acts for, from its Authorization and X-Daily-Credit-Budget headers (either
    path: `key_required` below, or the action's direct path, integration/api/action_path.py)."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key or len(key) > MAX_KEY_LENGTH:
        raise errors.missing_key()
    budget = budget_from(budget_header)
    owner = svc.owner(key)
    authcheck.refuse_if_known_bad(svc, owner, address)  # recently refused: no upstream call
    return Caller(key, owner, budget)


def key_required(view):
    """The view needs the caller's key: 401 without one, else the view gets `caller=Caller(...)`.

    The caller is also kept in `g.caller` for the error handler: an upstream 401 forgets the
    cached auth check of exactly this owner. The request's meter is charged to the caller's
    ledger, within the caller's budget (integration/ledger.py).
    """
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        svc, headers = services(), request.headers
        g.caller = caller = caller_for(svc, headers.get("Authorization", ""), headers.get(errors.BUDGET_HEADER, ""),
                                       request.remote_addr)
        g.meter.account = Account.for_owner(svc, caller.owner, caller.budget)
        return view(*args, caller=caller, **kwargs)

    return wrapped


class _Parser(ArgumentsMixin.ARGUMENTS_PARSER.__class__):
    DEFAULT_VALIDATION_STATUS = 400  # CONTRACT.md: failed validation is a 400, not webargs' 422


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = _Parser()

    def arguments(self, schema, *args, location: str = "json", **kwargs):
        """flask-smorest's `arguments`, documented as it documents them. A JSON body (the routes'
        `location`) is loaded by the schema itself from the body `_check_body` (app.py) already
        parsed and checked to be an object: webargs would parse it again and add its own
        layers (~5% of a trigger call's CPU); its answer to a failed validation, a 400 naming
        each field, is the same (errors.invalid_body). Other locations go through webargs."""
        # One schema instance per route, not one per request: webargs instantiates a schema
        # class on every call (field deep copies: ~5% of the action's CPU, bench/bench_overhead.py).
        schema = schema() if isinstance(schema, type) else schema
        through_webargs = super().arguments(schema, *args, location=location, **kwargs)
        if location != "json" or kwargs:
            return through_webargs

        def decorator(view):
            documented = through_webargs(view)

            @functools.wraps(view)
            def loaded(*view_args, **view_kwargs):
                body = g.get("json_body")
                if body is None:  # a method whose body app.py does not read: webargs decides
                    return documented(*view_args, **view_kwargs)
                try:
                    values = schema.load(body)
                except ValidationError as err:
                    raise errors.invalid_body(err.messages) from None
                return view(*view_args, values, **view_kwargs)
            loaded._apidoc = documented._apidoc
            return loaded
        return decorator

    def documented_errors(self, *statuses: int):
        """Document the error answers (our `{"error", "code"}` body) an operation can give.

        Only their documentation is kept: each `alt_response` also wraps the view in a layer
        that runs on every call (an app-context lookup and a coroutine check, seven deep on
        the trigger routes)."""
        from schemas.errors import ErrorSchema

        def wrap(fn):
            documented = fn
            for status in statuses:
                documented = self.alt_response(status, schema=ErrorSchema, description="Error")(documented)
            fn._apidoc = documented._apidoc
            return fn
        return wrap


def json_answer(body) -> Response:
    """An answer already built in its documented shape (the action's, the triggers' items),
    sent without a schema pass, serialised by orjson: a fraction of the json module's CPU on
    a page of accounts (bench/bench_unitcost.py)."""
    return current_app.response_class(orjson.dumps(body), mimetype="application/json")


def json_error(err: ApiError):
    response = jsonify(err.body())
    response.status_code = err.status
    response.headers.update(err.headers)
    return response


class Api(flask_smorest.Api):
    def __init__(self, *args, **kwargs):
        from schemas.errors import ErrorSchema

        self.ERROR_SCHEMA = ErrorSchema  # documents our {"error", "code"} body for every error status
        super().__init__(*args, **kwargs)

    def _register_error_handlers(self):
        super()._register_error_handlers()  # HTTPException -> handle_http_exception (below)
        app: Flask = self._app
        app.register_error_handler(ApiError, json_error)
        app.register_error_handler(UpstreamFailure, _upstream_failure)
        app.register_error_handler(BudgetReached, lambda exc: json_error(errors.daily_budget_reached(exc.resets_at)))
        app.register_error_handler(OperationalError, _storage_unavailable)
        app.register_error_handler(Exception, self._crash)

    def handle_http_exception(self, error: HTTPException):
        return json_error(http_error(error))

    def _crash(self, exc: Exception):
        if isinstance(exc, HTTPException):
            return self.handle_http_exception(exc)
        logger.exception("unhandled error")
        return json_error(ApiError(500, "internal_error", "Something went wrong on our side; nothing was lost. Try again."))


def http_error(exc: HTTPException) -> ApiError:
    """werkzeug's HTTP exceptions (routing, webargs, body limits) in our error shape."""
    messages = (getattr(exc, "data", None) or {}).get("messages")
    if exc.code in (400, 422) and messages is not None:  # webargs: the body failed schema validation
        return errors.invalid_body(messages.get("json") or messages.get("query") or messages)
    if exc.code == 400:
        return errors.not_json()
    if exc.code == 404:
        return errors.not_found("This route")
    if exc.code == 405:
        allowed = ", ".join(getattr(exc, "valid_methods", None) or ())
        return ApiError(405, "method_not_allowed", f"{request.method} is not allowed on this route.",
                        {"Allow": allowed} if allowed else {})
    if exc.code == 413:
        return errors.body_too_large(current_app.config.get("MAX_CONTENT_LENGTH"))
    return ApiError(exc.code or 500, "http_error", exc.description or exc.name)


def _upstream_failure(failure: UpstreamFailure):
    meter = g.get("meter")
    if meter is not None:
        meter.rate_limit.update(failure.rate_limit)
    caller: Caller | None = g.get("caller")
    if failure.kind == "unauthorized" and caller is not None:
        # The next auth test asks again; this key (and an address sending many bad keys)
        # is answered from the negative cache for a while.
        authcheck.forget(services(), caller.owner, request.remote_addr)
    return json_error(errors.from_upstream(failure))


def _storage_unavailable(exc: OperationalError):
    log(logger, logging.ERROR, "database unavailable", error=type(exc.orig).__name__, detail=str(exc.orig)[:200])
    return json_error(ApiError(503, "storage_unavailable",
                               "Our database is temporarily unavailable; nothing was lost. Try again in a minute.",
                               {"Retry-After": "30"}))
