"""Shared by the benchmark scripts: the fake upstream in its own process, and our service
started the way `make run` starts it (gunicorn with gunicorn.conf.py)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from integration.migrate import upgrade  # noqa: E402
from tests.conftest import API_KEY, free_port, start_service, stop_service  # noqa: E402,F401


class FakeProcess:
    """`python -m fakeupstream` in a subprocess, so its threads do not share our GIL."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "fakeupstream", "--port", str(self.port)],
                                        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/_fake/credits", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.05)
        self.control("keys", {"key": API_KEY, "credits": None})

    def control(self, path: str, body: dict):
        response = requests.post(f"{self.url}/_fake/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


def fresh_sqlite() -> str:
    folder = tempfile.mkdtemp(prefix="bench-")
    url = f"sqlite:///{folder}/bench.db"
    upgrade(url)
    return url


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def service_env(**extra) -> dict:
    return {"REFRESH_WINDOW_SECONDS": "0", "UPSTREAM_TOTAL_SECONDS": "25", "UPSTREAM_READ_TIMEOUT": "12",
            **{k: str(v) for k, v in extra.items()}}


def default_gunicorn() -> dict:
    """Workers and threads exactly as gunicorn.conf.py picks them (what `make run` starts)."""
    return {k: os.environ[k] for k in ("WEB_CONCURRENCY", "GUNICORN_THREADS") if k in os.environ}
