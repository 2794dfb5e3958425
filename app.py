"""The service: `create_app()` builds it; gunicorn calls the factory (`app:create_app()`,
see gunicorn.conf.py). Importing this module does no work: no pool, no log handler."""
from __future__ import annotations

import json
import time

from flask import Flask, g, request

from integration import errors
from integration.api import MAX_BUDGET, Api, health, hooks, lifecycle, platform_routes
from integration.api.action_path import ActionPath
from integration.config import Settings
from integration.observability import configure_logging
from integration.platforms import Platform, PlatformConverter
from integration.services import Services
from integration.upstream import Meter

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def create_app(overrides: dict | None = None, services: Services | None = None) -> Flask:
    settings = Settings.from_env(**(overrides or {}))
    configure_logging(settings.log_level)
    app = Flask(__name__)
    # Answers keep the order they were built in: sorting every object's keys cost more than the
    # rest of building a trigger answer (bench/bench_unitcost.py).
    app.json.sort_keys = False
    app.url_map.converters["platform"] = PlatformConverter
    app.config.update(
        # werkzeug refuses a longer body (Content-Length or chunked) with a 413 before reading it.
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_TITLE="TikTok Following for Zapier and Make",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {"description": "Lists the accounts a TikTok user follows and emits each new follow once, "
                                    "for Zapier, Make and direct API use, on top of DumplingAI."},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                          "description": "Your DumplingAI API key"}}},
            "security": [{"bearer": []}],  # the operations in health.py declare none
        },
    )
    api = Api(app)
    api.register_converter(PlatformConverter, lambda _conv: {"type": "string", "enum": [p.value for p in Platform]})
    for blp in (platform_routes.blp, hooks.blp, health.blp):
        api.register_blueprint(blp)
    _document_budget_header(api)
    app.extensions["tiktok_following"] = services or Services.build(settings)
    _install_request_hooks(app, settings)
    if settings.action_fast_path:
        app.wsgi_app = ActionPath(app, app.extensions["tiktok_following"], settings.max_body_bytes)
    return app


def _document_budget_header(api: Api) -> None:
    """Every operation that acts for a key accepts X-Daily-Credit-Budget (integration/ledger.py).
    Added after registration: apispec keeps the paths in `_paths`, and a per-view `doc(parameters=)`
    would replace the operation's own query parameters instead of adding to them."""
    api.spec.components.parameter("DailyCreditBudget", "header", {
        "name": errors.BUDGET_HEADER, "required": False,
        # A string of digits: an empty value (an app's blank optional field) means no budget.
        "schema": {"type": "string", "pattern": f"^[0-9]{{0,{len(str(MAX_BUDGET))}}}$"},
        "description": "The most DumplingAI credits the service may spend for this key per UTC day (0: none; "
                       "empty: no budget). "
                       "Once reached, nothing more is asked upstream until 00:00 UTC: triggers answer from the "
                       "journal, the action answers 402 daily_budget_reached. Subscribing stores it for the worker."})
    for path, operations in api.spec._paths.items():
        if not path.startswith("/v1/"):
            continue
        for operation in operations.values():
            if isinstance(operation, dict) and "responses" in operation:
                operation.setdefault("parameters", []).append({"$ref": "#/components/parameters/DailyCreditBudget"})


def _check_body(max_bytes: int) -> None:
    """Bodies are JSON objects of bounded size, refused before anything else reads them."""
    if request.routing_exception is not None:
        return  # a 404/405 says more than anything about the body
    if request.content_length is not None and request.content_length > max_bytes:
        raise errors.body_too_large(max_bytes)  # not read by us (gunicorn drains it for <= 5 s, discarding)
    if request.method not in _BODY_METHODS:
        return
    if not request.is_json:  # text/plain, a form, or no Content-Type: say so, not "handle: missing"
        raise errors.not_json_content_type()
    raw = request.get_data(cache=True)  # chunked: werkzeug stops reading at MAX_CONTENT_LENGTH
    if request.content_length is None and len(raw) >= max_bytes and request.stream.read(1):
        raise errors.body_too_large(max_bytes)  # more was coming: the rest is never read
    try:
        body = json.loads(raw) if raw else None
    except RecursionError:  # "[[[[...": the C parser recurses per level
        raise errors.json_too_deep()
    except (ValueError, UnicodeDecodeError):
        raise errors.not_json()
    if not isinstance(body, dict):
        raise errors.not_json()
    g.json_body = body  # what a route's `arguments` loads (integration/api/__init__.py)


def _install_request_hooks(app: Flask, settings: Settings) -> None:
    @app.before_request
    def _start():
        g.started = time.perf_counter()
        g.request_id = lifecycle.request_id(request.headers.get("X-Request-Id", ""))
        g.meter = Meter()
        _check_body(settings.max_body_bytes)

    @app.after_request
    def _finish(response):
        # Labels from bounded sets only: the rule (never the raw path) and a known method.
        response.headers.update(lifecycle.finish(
            g.get("meter"), (request.view_args or {}).get("platform"),
            request.url_rule.rule if request.url_rule else "unmatched", request.method, response.status_code,
            g.get("request_id", ""), g.get("started", time.perf_counter())))
        return response
