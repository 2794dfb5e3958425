"""Liveness, readiness and metrics. No API key: these operations declare no security."""
from __future__ import annotations

from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import text

from integration.api import Blueprint, services

blp = Blueprint("health", __name__, description="Operations")
NO_KEY = {"security": []}

# A real write: readiness must fail when the database answers reads but cannot store
# anything (disk full, read-only file or mount, a read-only replica). alembic_version is the
# one-row table every migrated database has; rewriting it with its own value changes nothing
# but needs the write lock and, at commit, a write to the log (WAL) - exactly what fails.
_WRITE_PROBE = text("UPDATE alembic_version SET version_num = version_num")


@blp.route("/healthz")
@blp.doc(responses={"200": {"description": "The process is alive"}}, **NO_KEY)
def healthz():
    """Liveness"""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.doc(responses={"200": {"description": "Ready"},
                    "503": {"description": "The database cannot be reached or cannot be written"}}, **NO_KEY)
def readyz():
    """Readiness: the database answers and accepts a write"""
    try:
        with services().engine.begin() as conn:
            conn.execute(_WRITE_PROBE)
    except Exception:  # noqa: BLE001 - any failure means not ready
        return {"status": "unavailable", "error": "The database cannot be reached or written.", "code": "not_ready"}, 503
    return {"status": "ready"}


@blp.route("/metrics")
@blp.doc(responses={"200": {"description": "Prometheus text format",
                            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
         **NO_KEY)
def metrics():
    """Prometheus metrics"""
    if services().settings.metrics_dir:  # gunicorn: every worker writes its own files there
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=services().settings.metrics_dir)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
