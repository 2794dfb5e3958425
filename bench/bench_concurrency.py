"""Concurrency: the fake upstream answers in 1 s; 200 concurrent clients (keep-alive, one
session each) call POST /v1/api/following on one instance started as `make run` starts it
(gunicorn.conf.py). Reports requests/s and latency percentiles. Goal: >= 180 req/s.

    .venv/bin/python bench/bench_concurrency.py [CLIENTS] [SECONDS]
"""
from __future__ import annotations

import sys
import threading
import time

import http.client
import json

from harness import API_KEY, FakeProcess, fresh_sqlite, percentile, service_env, start_service, stop_service

CLIENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
DELAY = 1.0


def main():
    fake = FakeProcess()
    fake.control("handles/alice/seed", {"n": 100})
    fake.control("config", {"delay": DELAY})
    # workers/threads: whatever gunicorn.conf.py chooses, i.e. exactly what `make run` starts.
    import gunicorn_settings  # noqa: F401  (prints the configuration used)
    service = start_service(fresh_sqlite(), fake.url, workers=gunicorn_settings.WORKERS,
                            threads=gunicorn_settings.THREADS, extra_env=service_env())
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start_gate = threading.Event()
    stop_at = [0.0]

    host, port = service.url.split("//")[1].split(":")
    payload = json.dumps({"handle": "alice", "count": 30})
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    def client():
        # http.client keeps the load generator itself cheap: 200 threads share our 2 cores
        # with the service and the fake upstream.
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        start_gate.wait()
        while time.monotonic() < stop_at[0]:
            began = time.monotonic()
            try:
                conn.request("POST", "/v1/api/following", body=payload, headers=headers)
                r = conn.getresponse()
                r.read()
                ok = r.status == 200
                r.status_code = r.status
            except (OSError, http.client.HTTPException) as exc:
                ok, r = False, exc
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
            finished = time.monotonic()
            with lock:
                if ok:
                    if finished <= stop_at[0]:  # count only what completes inside the window
                        latencies.append(finished - began)
                else:
                    errors.append(str(getattr(r, "status_code", r))[:80])

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    began = time.monotonic()
    stop_at[0] = began + SECONDS
    start_gate.set()
    for t in threads:
        t.join(SECONDS + 40)
    elapsed = time.monotonic() - began
    stop_service(service)
    fake.stop()
    done = len(latencies)
    print(f"clients {CLIENTS}, upstream delay {DELAY:.1f} s, {SECONDS:.0f} s window ({elapsed:.1f} s with drain)")
    print(f"completed {done}, errors {len(errors)} {sorted(set(errors))[:3]}")
    print(f"throughput {done / SECONDS:.1f} req/s   (ceiling {CLIENTS / DELAY:.0f}; goal >= {0.9 * CLIENTS / DELAY:.0f})")
    if latencies:
        print(f"latency p50 {percentile(latencies, 50) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms,"
              f" max {max(latencies) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
