"""Shared fixtures: the fake upstream, databases (SQLite, and PostgreSQL when
TEST_DATABASE_URL is set), an in-process app, and a live service under gunicorn."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, settings
from sqlalchemy import text

from fakeupstream import FakeDumpling
from integration.db import make_engine
from integration.migrate import upgrade
from integration.models import Base, utcnow

# Property tests: `make test` (and CI) run a fixed, derandomized set of examples, so a run
# is the same on every machine; `make fuzz` explores at random (and keeps what fails in
# .hypothesis/ to replay: turn each into an @example before fixing it).
settings.register_profile("ci", derandomize=True, database=None, max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("fuzz", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
PG_URL = os.environ.get("TEST_DATABASE_URL", "")


def unique_handle(prefix: str = "h") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def fake_upstream_server():
    fake = FakeDumpling().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_upstream(fake_upstream_server):
    fake_upstream_server.reset()
    fake_upstream_server.add_key(API_KEY)
    yield fake_upstream_server
    fake_upstream_server.reset()


def _database_params():
    params = ["sqlite"]
    if PG_URL:
        params.append("postgresql")
    return params


@pytest.fixture(scope="session")
def _pg_migrated():
    if not PG_URL:
        return None
    engine = make_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    upgrade(PG_URL)
    return PG_URL


@pytest.fixture(params=_database_params())
def database_url(request, tmp_path):
    """A migrated, empty database: a fresh SQLite file, or the PostgreSQL test database truncated."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        upgrade(url)
        return url
    url = request.getfixturevalue("_pg_migrated")
    engine = make_engine(url)
    with engine.begin() as conn:
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


def make_test_app(database_url: str, fake_url: str, **overrides):
    from app import create_app

    settings = dict(database_url=database_url, dumpling_base_url=fake_url, refresh_window_seconds=0,
                    allow_private_webhook_targets=True, upstream_total_seconds=5.0, upstream_read_timeout=3.0)
    settings.update(overrides)
    return create_app(settings)


@contextlib.contextmanager
def clocked_app(database_url: str, fake_url: str, start, **overrides):
    """(test client, services, now): a test app whose clock reads now[0], which the test moves."""
    app = make_test_app(database_url, fake_url, **overrides)
    svc = app.extensions["tiktok_following"]
    now = [start]
    svc.clock = lambda: now[0]
    try:
        yield app.test_client(), svc, now
    finally:
        svc.client.close()
        svc.engine.dispose()


@pytest.fixture
def app(database_url, fake_upstream):
    application = make_test_app(database_url, fake_upstream.url)
    yield application
    svc = application.extensions["tiktok_following"]
    svc.client.close()
    svc.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Clock:
    """A service clock that tests move forward (`svc.clock`): the real time plus an offset."""

    def __init__(self):
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)


class LiveService:
    def __init__(self, url: str, process: subprocess.Popen, database_url: str):
        self.url, self.process, self.database_url = url, process, database_url


def start_service(database_url: str, fake_url: str, *, extra_env: dict | None = None, workers: int = 2,
                  threads: int = 16, log_path: Path | None = None, root: Path = ROOT) -> LiveService:
    """`root`: the tree whose code gunicorn serves (bench/ compares a baseline commit's tree)."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "DUMPLING_BASE_URL": fake_url, "PORT": str(port),
           "HOST": "127.0.0.1", "REFRESH_WINDOW_SECONDS": "0", "ALLOW_PRIVATE_WEBHOOK_TARGETS": "1",
           "WEB_CONCURRENCY": str(workers), "GUNICORN_THREADS": str(threads), "UPSTREAM_TOTAL_SECONDS": "8",
           "UPSTREAM_READ_TIMEOUT": "5",
           # Shared by many tests: one that makes the upstream refuse the common test key must not
           # make the next test's calls 401 for a minute (the cache is tested in-process).
           "AUTH_NEGATIVE_CACHE_SECONDS": "0", **(extra_env or {})}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
                               cwd=root, env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"service exited with {process.returncode}; see {log_path}")
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                return LiveService(url, process, database_url)
        except requests.RequestException:  # not listening yet, or still booting
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("service did not become ready")


def stop_service(service: LiveService) -> None:
    service.process.terminate()
    try:
        service.process.wait(10)
    except subprocess.TimeoutExpired:
        service.process.kill()


@pytest.fixture(scope="session")
def live_service(fake_upstream_server, tmp_path_factory):
    """Our service under gunicorn in a subprocess, on a SQLite file, backed by the fake upstream.
    Session-scoped: tests use unique handles (see unique_handle)."""
    folder = tmp_path_factory.mktemp("live")
    url = f"sqlite:///{folder / 'live.db'}"
    upgrade(url)
    service = start_service(url, fake_upstream_server.url, log_path=folder / "service.log")
    yield service
    stop_service(service)


# ---------------------------------------------------------------- worker processes


def start_worker(database_url: str, fake_url: str, log_path: Path, **env) -> subprocess.Popen:
    full_env = {**os.environ, "DATABASE_URL": database_url, "DUMPLING_BASE_URL": fake_url,
                "ALLOW_PRIVATE_WEBHOOK_TARGETS": "1", "WORKER_IDLE_SECONDS": "0.1",
                "UPSTREAM_TOTAL_SECONDS": "20", "UPSTREAM_READ_TIMEOUT": "15",
                **{k: str(v) for k, v in env.items()}}
    with open(log_path, "wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen([sys.executable, "-m", "integration.worker"], cwd=ROOT, env=full_env,
                                   stdout=out, stderr=out)
    process.log_path = log_path
    deadline = time.monotonic() + 30
    while b'"worker started"' not in log_path.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"worker did not start:\n{log_path.read_text()}")
        time.sleep(0.05)
    return process


def stop_worker(process: subprocess.Popen) -> dict:
    """SIGTERM, expect exit 0, and return the stats of its "worker stopped" log line."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    # Longer than SQLite's busy timeout (30 s, integration/db.py): on a loaded machine the last
    # outcome flush may wait for the write lock before the worker can exit.
    try:
        code = process.wait(45)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)  # its threads' stacks into its log (integration/worker.py)
        time.sleep(1)
        raise AssertionError(f"the worker did not stop within 45 s:\n{process.log_path.read_text()}") from None
    assert code == 0, process.log_path.read_text()
    for line in process.log_path.read_text().splitlines():
        if '"worker stopped"' in line:
            return json.loads(line)
    raise AssertionError("no 'worker stopped' line")


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)
