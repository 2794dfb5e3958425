"""Concurrency: the fake upstream answers in 1 s; 200 concurrent clients (keep-alive, one
session each) call POST /v1/api/following on one instance started as `make run` starts it
(gunicorn.conf.py). Reports requests/s and latency percentiles. Goal: >= 180 req/s.

    .venv/bin/python bench/bench_concurrency.py [CLIENTS] [SECONDS]
"""
from __future__ import annotations

import sys
import time

from harness import FakeProcess, closed_loop, fresh_sqlite, percentile, service_env, start_service, steady_rate, stop_service

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
    began = time.monotonic()
    latencies, errors = closed_loop(service.url, "/v1/api/following", [{"handle": "alice", "count": 30}] * CLIENTS,
                                    SECONDS)
    elapsed = time.monotonic() - began
    stop_service(service)
    fake.stop()
    done = len(latencies)
    print(f"clients {CLIENTS}, upstream delay {DELAY:.1f} s, {SECONDS:.0f} s window ({elapsed:.1f} s with drain)")
    print(f"completed {done}, errors {len(errors)} {sorted(set(errors))[:3]}")
    print(f"throughput {done / SECONDS:.1f} req/s completed in the window, {steady_rate(CLIENTS, latencies):.1f} req/s "
          f"as clients / mean latency (ceiling {CLIENTS / DELAY:.0f}; goal >= {0.9 * CLIENTS / DELAY:.0f})")
    if latencies:
        print(f"latency p50 {percentile(latencies, 50) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms,"
              f" max {max(latencies) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
