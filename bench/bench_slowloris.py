"""Slow clients against the web service as `make run` ships it, while we ask /healthz every
0.1 s. Prints /healthz p50/p99 and how many did not answer within 1 s.

Two kinds of slow client (CLIENTS connections, each a request that never ends in the run):
- heads (default): one header byte every BYTE_EVERY seconds;
- --body: a whole request head at once (POST /v1/api/following, with a key, JSON,
  Content-Length: 200), then one body byte every BYTE_EVERY seconds. Our gunicorn worker
  (integration/http_worker.py) buffers a small body before it gives the request a thread;
  a server that hands the request to a thread at its head has that thread wait on the body.
A connection the server closes is opened again at once, as an attacker would.

--granian: the same app behind granian (bench/harness.py's start_granian, 2 workers x 128
blocking threads) instead of gunicorn; granian is not a dependency: install it beside, e.g.
`pip install --target DIR granian` and PYTHONPATH=DIR.

    .venv/bin/python bench/bench_slowloris.py [CLIENTS] [SECONDS] [--body] [--granian]
"""
from __future__ import annotations

import argparse
import socket
import time

import requests

from harness import (API_KEY, GRANIAN_MISSING, ROOT, FakeProcess, fresh_sqlite, have_granian, percentile, service_env,
                     start_granian, start_service, stop_service)

BYTE_EVERY = 1.0
HEAD_DRIP = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100_000
# A valid JSON body (trailing blanks are allowed), 200 bytes: at one byte a second it does not
# complete within a run of up to 200 s.
BODY = b'{"handle": "alice", "count": 30}'.ljust(200)
BODY_HEAD = (b"POST /v1/api/following HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
             b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n")


class SlowClient:
    """One connection: `head` sent at once on (re)connecting, then `drip` one byte per send_byte()."""

    def __init__(self, port: int, head: bytes, drip: bytes):
        self.port, self.head, self.drip = port, head, drip
        self.sock: socket.socket | None = None
        self.sent = 0
        self.connect()

    def connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.sock.sendall(self.head)
        self.sock.setblocking(False)
        self.sent = 0

    def send_byte(self) -> bool:
        """False when the server had closed the connection (it is then opened again, if it can be)."""
        if self.sock is None:
            return True
        try:
            self.sock.send(self.drip[self.sent:self.sent + 1])
            self.sent += 1
            return True
        except OSError:
            self.close()
            try:
                self.connect()
            except OSError:
                self.sock = None
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clients", nargs="?", type=int, default=300)
    parser.add_argument("seconds", nargs="?", type=float, default=20.0)
    parser.add_argument("--body", action="store_true", help="slow bodies after a whole head (default: slow heads)")
    parser.add_argument("--granian", action="store_true", help="serve behind granian instead of gunicorn")
    args = parser.parse_args()
    if args.granian and not have_granian():
        parser.error(GRANIAN_MISSING)

    fake = FakeProcess()
    if args.granian:
        print("granian: workers=2 blocking-threads=128")
        service = start_granian(ROOT, fake)
    else:
        import gunicorn_settings  # (prints the configuration used)

        service = start_service(fresh_sqlite(), fake.url, workers=gunicorn_settings.WORKERS,
                                threads=gunicorn_settings.THREADS, extra_env=service_env())
    port = int(service.url.rsplit(":", 1)[1])
    head, drip = (BODY_HEAD, BODY) if args.body else (b"", HEAD_DRIP)
    clients: list[SlowClient] = []
    try:
        for _ in range(args.clients):
            clients.append(SlowClient(port, head, drip))
        latencies, late, closed = [], 0, 0
        started = next_drip = time.monotonic()
        while time.monotonic() - started < args.seconds:  # bounded
            if time.monotonic() >= next_drip:
                closed += sum(not client.send_byte() for client in clients)
                next_drip += BYTE_EVERY
            t0 = time.perf_counter()
            try:
                ok = requests.get(service.url + "/healthz", timeout=5).status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = time.perf_counter() - t0 if ok else 5.0
            latencies.append(elapsed)
            late += elapsed > 1.0
            time.sleep(0.1)
        what = (f"whole head, then 1 body byte / {BYTE_EVERY:.0f} s of {len(BODY)}" if args.body
                else f"1 header byte / {BYTE_EVERY:.0f} s")
        print(f"slow clients {args.clients} ({what}), {args.seconds:.0f} s, "
              f"{len(latencies)} /healthz probes; slow connections closed by the server: {closed}")
        print(f"/healthz p50 {percentile(latencies, 50) * 1000:.1f} ms, p99 {percentile(latencies, 99) * 1000:.1f} ms, "
              f"over 1 s or no answer: {late}   (goal: 0)")
    finally:
        for client in clients:
            client.close()
        stop_service(service)
        fake.stop()


if __name__ == "__main__":
    main()
