"""The web layer's shape: no work at import time, the caller passed explicitly to the views,
errors through flask-smorest's extension point, readiness that writes, bounded labels."""
from __future__ import annotations

import logging
import subprocess
import sys

from flask.views import MethodView

from integration.api import Blueprint, Caller, key_required
from integration.security import key_hash
from tests.conftest import API_KEY, AUTH, ROOT, make_test_app


def test_importing_the_service_opens_no_pool_and_touches_no_log_handler(tmp_path):
    database = tmp_path / "never" / "app.db"
    probe = (
        "import gc, logging\n"
        "from sqlalchemy.engine import Engine\n"
        "import app, integration.api.health, integration.api.hooks, integration.api.platform_routes\n"
        "engines = [o for o in gc.get_objects() if isinstance(o, Engine)]\n"
        "assert engines == [], engines\n"
        "assert logging.getLogger().handlers == [], logging.getLogger().handlers\n"
        "assert not hasattr(app, 'app'), 'a module-level app'\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "DATABASE_URL": f"sqlite:///{database}"}, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not database.parent.exists()


def test_gunicorn_entry_points_load_the_factory():
    for path in ("Procfile", "scripts/run.sh", "tests/conftest.py"):
        text = (ROOT / path).read_text()
        assert "app:app" not in text and "app:create_app()" in text, path


def test_key_required_passes_the_caller_to_the_view(database_url, fake_upstream):
    blp = Blueprint("probe", __name__, url_prefix="/probe")
    seen: list[Caller] = []

    @blp.route("")
    class Probe(MethodView):
        @blp.documented_errors(401)
        @key_required
        def get(self, caller: Caller):
            seen.append(caller)
            return {"owner": caller.owner}

    app = make_test_app(database_url, fake_upstream.url)
    app.extensions["flask-smorest"]["apis"][""]["ext_obj"].register_blueprint(blp)  # the app's own Api
    client = app.test_client()
    missing = client.get("/probe")
    assert missing.status_code == 401 and missing.get_json()["code"] == "missing_api_key" and seen == []
    answer = client.get("/probe", headers=AUTH)
    owner = key_hash(app.extensions["tiktok_following"].settings.secret_key, API_KEY)
    assert answer.get_json() == {"owner": owner} and seen[0].key == API_KEY
    assert API_KEY not in repr(seen[0])  # a caller in a traceback or log line never shows the key


def test_wrong_method_is_405_with_allow(client):
    response = client.open("/v1/api/following", method="TRACE", headers=AUTH)
    assert response.status_code == 405 and response.get_json()["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"POST"}


def test_unknown_methods_share_one_metrics_label(client):
    for method in ("FOO1", "FOO2", "BREW"):
        client.open("/healthz", method=method)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'method="other"' in text
    assert not any(f'method="{m}"' in text for m in ("FOO1", "FOO2", "BREW"))


def test_the_web_process_honours_log_level(database_url, fake_upstream):
    root = logging.getLogger()
    before = root.level
    try:
        make_test_app(database_url, fake_upstream.url, log_level="WARNING")
        assert root.level == logging.WARNING
    finally:
        root.setLevel(before)


def test_readiness_fails_when_the_database_cannot_be_written(tmp_path, fake_upstream):
    from integration.migrate import upgrade

    path = tmp_path / "ready.db"
    upgrade(f"sqlite:///{path}")
    writable = make_test_app(f"sqlite:///{path}", fake_upstream.url)
    assert writable.test_client().get("/readyz").status_code == 200
    writable.extensions["tiktok_following"].engine.dispose()
    # The same file opened read-only (a read-only mount or file): reads work, writes do not.
    read_only = make_test_app(f"sqlite:///file:{path}?mode=ro&uri=true", fake_upstream.url)
    with read_only.extensions["tiktok_following"].engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1
    response = read_only.test_client().get("/readyz")
    assert response.status_code == 503 and response.get_json()["code"] == "not_ready"
    read_only.extensions["tiktok_following"].engine.dispose()


def test_a_webhook_target_whose_name_resolves_privately_is_refused_at_subscribe_time(database_url, fake_upstream):
    import socket

    app = make_test_app(database_url, fake_upstream.url, allow_private_webhook_targets=False)
    fake_upstream.seed("alice", 3)
    for host in (socket.gethostname(), "localhost.localdomain"):  # /etc/hosts names: loopback or private
        response = app.test_client().post("/v1/zapier/hooks", headers=AUTH,
                                          json={"handle": "alice", "targetUrl": f"https://{host}/hook"})
        assert response.status_code == 400, response.get_json()
        body = response.get_json()
        assert body["code"] == "invalid_target_url" and "targetUrl" in body["fields"]
    assert fake_upstream.requests == []  # refused before the baseline is taken
