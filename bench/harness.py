"""Shared by the benchmark scripts: the fake upstream in its own process, and our service
started the way `make run` starts it (gunicorn with gunicorn.conf.py)."""
from __future__ import annotations

import contextlib
import glob
import http.client
import importlib.util
import json
import os
import statistics
import threading
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from integration.migrate import upgrade  # noqa: E402
from tests.conftest import API_KEY, LiveService, free_port, start_service, stop_service  # noqa: E402,F401


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


def seeded_fake(handle: str = "alice", accounts: int = 100) -> FakeProcess:
    """The fake upstream in its process, `handle` following `accounts` accounts (the action
    benches read a page of 30 of them)."""
    fake = FakeProcess()
    try:
        fake.control(f"handles/{handle}/seed", {"n": accounts})
    except BaseException:
        fake.stop()
        raise
    return fake


def fresh_sqlite(tree: Path | None = None) -> str:
    """A new SQLite database with the schema of `tree` (default: this one)."""
    folder = tempfile.mkdtemp(prefix="bench-")
    url = f"sqlite:///{folder}/bench.db"
    return migrated(url, tree)


def migrated(url: str, tree: Path | None = None) -> str:
    """`url` upgraded by `tree`'s own migrations (a baseline commit's schema is not this
    tree's: run in a process of its own, with that tree first on the path)."""
    if tree is None or Path(tree).resolve() == ROOT:
        upgrade(url)
    else:
        subprocess.run([sys.executable, "-m", "integration.migrate"], cwd=tree, check=True, capture_output=True,
                       env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(tree)})
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


# granian (a Rust HTTP server) is not a dependency: the benches that weigh it run it only when
# it is installed beside.
GRANIAN_MISSING = ("--granian: granian is not importable "
                   "(install it beside: pip install --target DIR granian, PYTHONPATH=DIR)")


def have_granian() -> bool:
    return importlib.util.find_spec("granian") is not None


def start_granian(tree: Path, fake: FakeProcess) -> LiveService:
    """`tree`'s app behind granian, sized as `make run` sizes gunicorn (2 workers x 128 threads),
    on a fresh SQLite database; stop it with stop_service."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": fresh_sqlite(tree), "DUMPLING_BASE_URL": fake.url,
           "AUTH_NEGATIVE_CACHE_SECONDS": "0", **service_env()}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen([sys.executable, "-m", "granian", "--interface", "wsgi", "--factory", "--workers", "2",
                                "--blocking-threads", "128", "--host", "127.0.0.1", "--port", str(port), "--no-ws",
                                "--log-level", "warning", "app:create_app"], cwd=tree, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    service = LiveService(f"http://127.0.0.1:{port}", process, env["DATABASE_URL"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if requests.get(service.url + "/readyz", timeout=1).status_code == 200:
                return service
        except requests.RequestException:  # not listening yet
            time.sleep(0.1)
    stop_service(service)
    raise RuntimeError("granian did not become ready")


@contextlib.contextmanager
def baseline_tree(commit: str):
    """The tree of `commit` unpacked (`git archive`) into a temporary folder, for benches that
    run the same measurement on it and on the working tree. Nothing is written to the repository."""
    folder = tempfile.mkdtemp(prefix=f"baseline-{commit[:7]}-")
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", commit],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class PostgresCluster:
    def __init__(self, port: int):
        self.port = port

    def database(self, name: str) -> str:
        """A new, empty database of this cluster."""
        subprocess.run([self.bin + "/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
                       check=True)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@contextlib.contextmanager
def postgres_cluster():
    """A throwaway PostgreSQL cluster on 127.0.0.1 (as scripts/test.sh starts one), or None
    when no server binary is installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        yield None
        return
    pgbin = os.path.dirname(found[-1])
    folder = tempfile.mkdtemp(prefix="bench-pg-")
    as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
    if as_pg:
        shutil.chown(folder, "postgres")
    cluster = PostgresCluster(free_port())
    cluster.bin = pgbin
    subprocess.run(as_pg + [f"{pgbin}/initdb", "-D", f"{folder}/data", "-A", "trust", "-U", "postgres", "--no-sync"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(as_pg + [f"{pgbin}/pg_ctl", "-D", f"{folder}/data", "-l", f"{folder}/log", "-w", "-o",
                            f"-p {cluster.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                            "-c max_connections=300", "start"], check=True, stdout=subprocess.DEVNULL)
    try:
        yield cluster
    finally:
        subprocess.run(as_pg + [f"{pgbin}/pg_ctl", "-D", f"{folder}/data", "-m", "fast", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)


def steady_rate(clients: int, latencies: list[float]) -> float:
    """A closed loop's throughput by Little's law: clients / mean latency (no think time). Unlike the
    calls completed in a window, not quantized by clients that start together."""
    return clients / statistics.fmean(latencies) if latencies else float("nan")


def closed_loop(url: str, path: str, bodies: list[dict], seconds: float, warm_up: bool = False) -> tuple[list[float], list[str]]:
    """One client thread per body, each POSTing it to `path` again and again over one keep-alive
    connection for `seconds`: (latencies of the calls completed inside the window, errors).
    http.client keeps the load generator cheap: its threads share the machine with the service.
    `warm_up`: each client's first call happens before the window opens (all clients at once)."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    ready = threading.Barrier(len(bodies) + 1)
    stop_at = [0.0]
    host, port = url.split("//")[1].split(":")
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    def call(conn, payload):
        conn.request("POST", path, body=payload, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status

    def client(body: dict):
        payload = json.dumps(body)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        if warm_up:
            call(conn, payload)
        ready.wait()
        while time.monotonic() < stop_at[0]:
            began = time.monotonic()
            try:
                status = call(conn, payload)
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
            finished = time.monotonic()
            with lock:
                if status != 200:
                    errors.append(str(status)[:80])
                elif finished <= stop_at[0]:  # count only what completes inside the window
                    latencies.append(finished - began)

    threads = [threading.Thread(target=client, args=(body,), daemon=True) for body in bodies]
    for thread in threads:
        thread.start()
    stop_at[0] = float("inf")  # set before the barrier releases the clients
    ready.wait(120)
    stop_at[0] = time.monotonic() + seconds
    for thread in threads:
        thread.join(seconds + 40)
    return latencies, errors
