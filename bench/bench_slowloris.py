"""Slow clients against the web service as `make run` ships it: CLIENTS connections each send
one header byte every BYTE_EVERY seconds (a request that never ends), while we ask /healthz
every 0.1 s. Prints /healthz p50/p99 and how many did not answer within 1 s.

    .venv/bin/python bench/bench_slowloris.py [CLIENTS] [SECONDS]
"""
from __future__ import annotations

import socket
import sys
import time

import requests

from harness import FakeProcess, fresh_sqlite, percentile, service_env, start_service, stop_service

CLIENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 300
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
BYTE_EVERY = 1.0
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100_000


def open_slow_clients(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.setblocking(False)
        socks.append(s)
    return socks


def main():
    import gunicorn_settings  # noqa: F401  (prints the configuration used)

    fake = FakeProcess()
    service = start_service(fresh_sqlite(), fake.url, workers=gunicorn_settings.WORKERS,
                            threads=gunicorn_settings.THREADS, extra_env=service_env())
    port = int(service.url.rsplit(":", 1)[1])
    socks: list[socket.socket] = []
    try:
        socks = open_slow_clients(port, CLIENTS)
        sent = [0] * len(socks)
        latencies, late, closed = [], 0, 0
        started = next_drip = time.monotonic()
        while time.monotonic() - started < SECONDS:  # bounded
            if time.monotonic() >= next_drip:
                for i, s in enumerate(socks):
                    if s.fileno() < 0:
                        continue
                    try:
                        s.send(REQUEST[sent[i]:sent[i] + 1])
                        sent[i] += 1
                    except OSError:  # the server closed it (a header timeout): reconnect, like an attacker
                        s.close()
                        closed += 1
                        try:
                            socks[i] = socket.create_connection(("127.0.0.1", port), timeout=5)
                            socks[i].setblocking(False)
                            sent[i] = 0
                        except OSError:
                            pass
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
        print(f"slow clients {CLIENTS} (1 header byte / {BYTE_EVERY:.0f} s), {SECONDS:.0f} s, "
              f"{len(latencies)} /healthz probes; slow connections closed by the server: {closed}")
        print(f"/healthz p50 {percentile(latencies, 50) * 1000:.1f} ms, p99 {percentile(latencies, 99) * 1000:.1f} ms, "
              f"over 1 s or no answer: {late}   (goal: 0)")
    finally:
        for s in socks:
            s.close()
        stop_service(service)
        fake.stop()


if __name__ == "__main__":
    main()
