"""The service: `create_app()` builds it; gunicorn serves `app:app` (see gunicorn.conf.py)."""
from __future__ import annotations

import json
import logging
import time
import uuid

from flask import Flask, current_app, g, jsonify, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from integration import errors
from integration.api import Api, health, hooks, platform_routes
from integration.authcheck import forget
from integration.config import Settings
from integration.errors import ApiError, UpstreamFailure
from integration.observability import CREDITS_SPENT, HTTP_LATENCY, HTTP_REQUESTS, configure_logging, log
from integration.platforms import Platform, PlatformConverter
from integration.services import Services
from integration.upstream import Meter

logger = logging.getLogger("app")


def create_app(overrides: dict | None = None, services: Services | None = None) -> Flask:
    configure_logging()
    settings = Settings.from_env(**(overrides or {}))
    app = Flask(__name__)
    app.url_map.converters["platform"] = PlatformConverter
    app.config.update(
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
            "security": [{"bearer": []}],
        },
    )
    api = Api(app)
    api.register_converter(PlatformConverter, lambda _conv: {"type": "string", "enum": [p.value for p in Platform]})
    for blp in (platform_routes.blp, hooks.blp, health.blp):
        api.register_blueprint(blp)
    app.extensions["tiktok_following"] = services or Services.build(settings)
    _install_request_hooks(app)
    _install_error_handlers(app)
    return app


def _install_request_hooks(app: Flask) -> None:
    @app.before_request
    def _start():
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if incoming.isalnum() and len(incoming) <= 64 else uuid.uuid4().hex
        g.meter = Meter()
        if request.method in ("POST", "PUT", "PATCH") and request.get_data(cache=True):
            try:
                body = json.loads(request.get_data(cache=True))
            except (ValueError, UnicodeDecodeError):
                raise errors.not_json()
            if not isinstance(body, dict):
                raise errors.not_json()

    @app.after_request
    def _finish(response):
        meter: Meter = g.get("meter")
        platform = (request.view_args or {}).get("platform")
        if meter is not None and platform is not None:
            response.headers.update(meter.headers() if meter.calls else {"X-Credits-Used": "0"})
            if meter.credits:
                CREDITS_SPENT.labels(platform.value).inc(meter.credits)
        response.headers["X-Request-Id"] = g.get("request_id", "")
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        HTTP_LATENCY.labels(route).observe(elapsed)
        if route not in ("/healthz", "/metrics"):
            log(logger, logging.INFO, "request", method=request.method, route=route, status=response.status_code,
                ms=round(elapsed * 1000, 2), credits=meter.credits if meter else 0,
                upstream_calls=meter.calls if meter else 0)
        return response


def _json_error(err: ApiError):
    response = jsonify(err.body())
    response.status_code = err.status
    response.headers.update(err.headers)
    return response


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        return _json_error(err)

    @app.errorhandler(UpstreamFailure)
    def _upstream(failure: UpstreamFailure):
        meter = g.get("meter")
        if meter is not None:
            meter.rate_limit.update(failure.rate_limit)
        if failure.kind == "unauthorized" and g.get("owner_hash"):
            # The next auth test asks again; this key (and an address sending many bad keys)
            # is answered from the negative cache for a while.
            forget(current_app.extensions["tiktok_following"], g.owner_hash, request.remote_addr)
        return _json_error(errors.from_upstream(failure))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        messages = (getattr(exc, "data", None) or {}).get("messages")
        if exc.code in (400, 422) and messages is not None:  # webargs: the body failed schema validation
            return _json_error(errors.invalid_body(messages.get("json") or messages.get("query") or messages))
        if exc.code == 400:
            return _json_error(errors.not_json())
        if exc.code == 404:
            return _json_error(errors.not_found("This route"))
        if exc.code == 405:
            return _json_error(ApiError(405, "method_not_allowed", f"{request.method} is not allowed on this route."))
        return _json_error(ApiError(exc.code or 500, "http_error", exc.description or exc.name))

    @app.errorhandler(OperationalError)
    def _storage(exc: OperationalError):
        log(logger, logging.ERROR, "database unavailable", error=type(exc.orig).__name__, detail=str(exc.orig)[:200])
        return _json_error(ApiError(503, "storage_unavailable",
                                    "Our database is temporarily unavailable; nothing was lost. Try again in a minute.",
                                    {"Retry-After": "30"}))

    @app.errorhandler(Exception)
    def _crash(exc: Exception):
        if isinstance(exc, HTTPException):
            return _http(exc)
        logger.exception("unhandled error")
        return _json_error(ApiError(500, "internal_error", "Something went wrong on our side; nothing was lost. Try again."))


app = create_app()
