"""No public secret: `make demo`/`make run` generate their SECRET_KEY once (0600, in a 0700
folder), listen on 127.0.0.1 for the demo; a short SECRET_KEY is refused outside development;
the SQLite file is private."""
from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import pytest
import requests

from integration.config import DEV_SECRET, Settings
from integration.db import make_engine
from integration.devsecret import ensure_secret
from integration.security import key_hash
from tests.conftest import ROOT, free_port


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_development_secret_is_generated_once_and_private(tmp_path):
    folder = tmp_path / "instance"
    first = subprocess.run([sys.executable, "-m", "integration.devsecret", str(folder)], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert len(first) >= 32 and first != DEV_SECRET
    assert ensure_secret(folder) == first  # kept, not regenerated
    assert _mode(folder) == 0o700 and _mode(folder / "secret_key") == 0o600
    assert ensure_secret(tmp_path / "elsewhere") != first  # random per machine


@pytest.mark.parametrize("secret", ["short", "x" * 31, DEV_SECRET])
def test_a_weak_secret_key_is_refused_outside_development(secret):
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        Settings.from_env(environment="production", secret_key=secret)
    Settings.from_env(environment="production", secret_key="y" * 32)  # long enough


def test_the_sqlite_file_and_its_folder_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "data" / "app.db"
        engine = make_engine(f"sqlite:///{path}")
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
        assert _mode(f"{path}-wal") == 0o600  # SQLite gives its journal the database file's mode
        engine.dispose()
    finally:
        os.umask(old)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port` (from /proc/net/tcp)."""
    found = set()
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":
            found.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


def test_make_demo_listens_on_loopback_only_with_a_generated_secret(tmp_path):
    port, fake_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "HOST", "APP_ENV", "PROMETHEUS_MULTIPROC_DIR")}
    env.update(PORT=str(port), FAKE_PORT=str(fake_port), DATABASE_URL=f"sqlite:///{tmp_path / 'demo.db'}",
               WEB_CONCURRENCY="1", GUNICORN_THREADS="4", HOST="0.0.0.0")  # HOST is overridden by the demo
    log = open(tmp_path / "demo.log", "wb")
    demo = subprocess.Popen(["scripts/demo.sh"], cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert demo.poll() is None and time.monotonic() < deadline, (tmp_path / "demo.log").read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        assert _listening_addresses(port) == {"127.0.0.1"}
        response = requests.post(f"http://127.0.0.1:{port}/v1/api/triggers/new-following", timeout=30,
                                 json={"handle": "charlidamelio"}, headers={"Authorization": "Bearer demo-key"})
        assert response.status_code == 200, response.text
        secret = (ROOT / "instance" / "secret_key").read_text().strip()
        with sqlite3.connect(tmp_path / "demo.db") as db:
            owners = {row[0] for row in db.execute("SELECT owner_hash FROM watches")}
        assert owners == {key_hash(secret, "demo-key")} != {key_hash(DEV_SECRET, "demo-key")}
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(30)
        log.close()
