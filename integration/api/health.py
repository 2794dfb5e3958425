"""Liveness, readiness and metrics."""
from __future__ import annotations

import os

from flask import Response
from integration.api import Blueprint
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import text

from integration.api import services

blp = Blueprint("health", __name__, description="Operations")


@blp.route("/healthz")
@blp.doc(responses={"200": {"description": "The process is alive"}})
def healthz():
    """Liveness"""
    return {"status": "ok"}


@blp.route("/readyz")
@blp.doc(responses={"200": {"description": "Ready"}, "503": {"description": "The database does not answer"}})
def readyz():
    """Readiness: the database answers"""
    try:
        with services().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means not ready
        return {"status": "unavailable", "error": "The database does not answer.", "code": "not_ready"}, 503
    return {"status": "ready"}


@blp.route("/metrics")
@blp.doc(responses={"200": {"description": "Prometheus text format"}})
def metrics():
    """Prometheus metrics"""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
