"""Where the action's added time goes (issue 14 item 2), each part measured alone, and the
HTTP servers side by side. Complements bench/bench_overhead.py (the end-to-end figure).

In one process, the fake upstream in its own, wall p50 per call (interleaved rounds):
- the exchange floor: one request and answer to the fake on a raw socket (the fake's own time);
- DumplingClient.fetch_page: our client (urllib3, deadline guard, answer check, flatten);
- the route in-process: POST /v1/api/following through the WSGI app, no HTTP server, metrics
  in multiprocess mode as under gunicorn;
- the same with the upstream call stubbed (a parsed page, its credit still written): the app's own cost;
- the credit's ledger write alone (Account.spent).
Then a WSGI app answering at once (bench/hello_wsgi.py, a body the size of the action's) behind
each server, against a plain requests.Session as bench_overhead.py's client: what the server costs.

Then the floor: the least a Python proxy adds, behind each server (bench/proxy_wsgi.py), each
row its own service process of 2 workers x 128 threads as the action's, measured exactly as
bench_overhead.py measures the action: one requests.Session to the fake direct and one to the
service, calls interleaved one by one, added = service p50 - direct p50. Rows: a raw WSGI
app doing one pycurl exchange with the fake; the same work in a plain Flask route; a plain
Flask route calling our DumplingClient.fetch_page. Against bench_overhead.py's added p50 this
says how much of it is the server, how much Flask, how much our own layers.

Rows behind granian (a Rust HTTP server) are skipped when it is not importable; it is not a
dependency: install it beside (`pip install --target DIR granian`) and set PYTHONPATH=DIR.

    .venv/bin/python bench/bench_overhead_split.py [N]
"""
from __future__ import annotations

import argparse
import atexit
import datetime as dt
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import orjson
import requests

from bench_overhead import BODY, DIRECT_PATH, HEADERS, ROUTE, interleaved, timed, warmed  # as that bench measures
from harness import API_KEY, ROOT, FakeProcess, fresh_sqlite, have_granian, percentile, seeded_fake
from tests.conftest import free_port

# Commands run in bench/; {workers} and {port} are filled in at start (gunicorn reads them
# from WEB_CONCURRENCY and PORT).
GUNICORN = "-m gunicorn -c ../gunicorn.conf.py"
GRANIAN = "-m granian --interface wsgi --workers {workers} --blocking-threads 128 --no-ws --host 127.0.0.1 --port {port}"
SERVERS = {  # name -> command serving hello_wsgi:app on a port (one worker process)
    "gunicorn HeadBufferingWorker (ours)": f"{GUNICORN} hello_wsgi:app",
    "gunicorn gthread": f"{GUNICORN} --worker-class gthread hello_wsgi:app",
    "gunicorn sync": f"{GUNICORN} --worker-class sync hello_wsgi:app",
    "granian (Rust, if installed)": f"{GRANIAN} hello_wsgi:app",
}
FLOOR = {  # name -> command serving one of bench/proxy_wsgi.py's apps, 2 workers as the action's
    "raw WSGI + pycurl, gunicorn (ours)": f"{GUNICORN} proxy_wsgi:app",
    "raw WSGI + pycurl, granian": f"{GRANIAN} proxy_wsgi:app",
    "plain Flask + pycurl, gunicorn (ours)": f"{GUNICORN} proxy_wsgi:flask_app",
    "Flask + DumplingClient, gunicorn (ours)": f"{GUNICORN} proxy_wsgi:client_app",
    "Flask + DumplingClient, granian": f"{GRANIAN} proxy_wsgi:client_app",
}


def raw_exchange(port: int):
    """One keep-alive socket, the request in one segment, the answer read to its Content-Length."""
    payload = orjson.dumps({**BODY, "requestSource": "API"})
    request = (f"POST /api/v1/get-tiktok-user-following HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call():
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
                     .split(b":")[1])
        while len(rest) < length:
            rest += sock.recv(65536)
    return call


def wsgi_call(app):
    body = orjson.dumps(BODY)

    def call():
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": ROUTE, "SCRIPT_NAME": "", "QUERY_STRING": "",
                   "SERVER_NAME": "bench", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
                   "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
                   "HTTP_AUTHORIZATION": f"Bearer {API_KEY}", "REMOTE_ADDR": "127.0.0.1", "wsgi.errors": sys.stderr,
                   "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0)}
        status = []
        b"".join(app(environ, lambda s, h, e=None: status.append(s)))
        assert status[0].startswith("200"), status
    return call


def p50_interleaved(calls: dict, n: int) -> dict:
    for call in calls.values():  # warm up connections and code paths
        for _ in range(100):
            call()
    walls = {name: [] for name in calls}
    for _ in range(4):
        for name, call in calls.items():
            for _ in range(n // 4):
                started = time.perf_counter()
                call()
                walls[name].append((time.perf_counter() - started) * 1000)
    return {name: percentile(w, 50) for name, w in walls.items()}


def in_process(fake: FakeProcess, n: int) -> dict:
    # As gunicorn.conf.py sets it: metrics in multiprocess mode (before prometheus_client is imported).
    metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bench-prom-")
    os.environ.update(DATABASE_URL=fresh_sqlite(), DUMPLING_BASE_URL=fake.url, REFRESH_WINDOW_SECONDS="0")
    from app import create_app
    from integration.api import services
    from integration.ledger import Account
    from integration.upstream import DumplingClient, UpstreamPage

    live, stubbed = create_app(), create_app()
    atexit.register(shutil.rmtree, metrics_dir, True)
    import logging
    logging.getLogger().handlers[0].stream = open(os.environ.get("BENCH_LOG", os.devnull), "w")  # formatted, not shown
    client = DumplingClient(fake.url)
    page = client.fetch_page(API_KEY, "alice", "API", count=30)
    with stubbed.app_context():
        svc = services()

        def fetch_stub(*_args, meter, **_kwargs) -> UpstreamPage:
            meter.before_call()
            meter.record(200, None)  # the credit is written as for a real 200
            return page
        svc.client.fetch_page = fetch_stub
        account = Account(svc.sessions, "bench-owner", dt.date.today(), dt.datetime.now())
    return p50_interleaved({
        "exchange floor (raw socket to the fake)": raw_exchange(fake.port),
        "DumplingClient.fetch_page": lambda: client.fetch_page(API_KEY, "alice", "API", count=30),
        "route in-process (WSGI, no server)": wsgi_call(live),
        "route in-process, upstream stubbed": wsgi_call(stubbed),
        "ledger credit alone (Account.spent)": lambda: account.spent(False),
    }, n)


def servers(fake: FakeProcess, n: int) -> dict:
    direct = requests.Session()
    calls, processes = {"the fake upstream, direct": lambda: timed(direct, fake.url + DIRECT_PATH, BODY)}, []
    try:
        for name, command in SERVERS.items():
            if not _runnable(command):
                continue
            process, url = _start(command, workers=1)
            processes.append(process)
            calls[name] = (lambda session, u: lambda: timed(session, u, BODY))(requests.Session(), url)
        return p50_interleaved(calls, n)
    finally:
        for process in processes:
            _stop(process)


def floor(fake: FakeProcess, n: int) -> dict:
    """name -> (direct p50, service p50), one row at a time, each in its own process."""
    rows = {}
    for name, command in FLOOR.items():
        if not _runnable(command):
            continue
        process, url = _start(command, workers=2, DUMPLING_BASE_URL=fake.url)
        try:
            direct_url, our_url = fake.url + DIRECT_PATH, url + ROUTE  # proxy_wsgi's Flask apps serve ROUTE too
            d, o = interleaved(warmed(direct_url, our_url), direct_url, our_url, n)
            rows[name] = (percentile(d, 50), percentile(o, 50))
        finally:
            _stop(process)
    return rows


def _runnable(command: str) -> bool:
    return "granian" not in command or have_granian()


def _start(command: str, workers: int, **extra_env) -> tuple[subprocess.Popen, str]:
    """`command` serving on a free port, answering; its process and base URL."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": str(workers),
           "GUNICORN_THREADS": "128", **extra_env}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # in_process's; gunicorn.conf.py makes its own
    process = subprocess.Popen([sys.executable, *command.format(port=port, workers=workers).split()],
                               cwd=ROOT / "bench", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url + ROUTE)
    except BaseException:
        _stop(process)
        raise
    return process, url


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(10)


def _wait(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.post(url, json=BODY, headers=HEADERS, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", nargs="?", type=int, default=2000, help="calls per part and per server")
    args = parser.parse_args()
    fake = seeded_fake()
    try:
        parts, served, floors = in_process(fake, args.n), servers(fake, args.n), floor(fake, args.n)
    finally:
        fake.stop()
    print(f"where the action's time goes: {args.n} calls each, wall p50, interleaved rounds")
    for name, p50 in parts.items():
        print(f"  {name:42}{p50:>8.3f} ms")
    print("a WSGI app answering at once behind each server (requests.Session client, one process):")
    for name, p50 in served.items():
        print(f"  {name:42}{p50:>8.3f} ms")
    print("the least a Python proxy adds, behind each server (2 workers x 128 threads, interleaved as bench_overhead.py):")
    print(f"  {'p50 ms':42}{'direct':>8}{'service':>9}{'added':>8}")
    for name, (direct, ours) in floors.items():
        print(f"  {name:42}{direct:>8.3f}{ours:>9.3f}{ours - direct:>8.3f}")


if __name__ == "__main__":
    main()
