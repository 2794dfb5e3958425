"""Overhead of our service: p50/p99 of POST /v1/api/following against calling the fake
upstream directly, same client (one keep-alive requests.Session each), same run, the
upstream answering at once. Goal: under 2 ms added at p50.

    .venv/bin/python bench/bench_overhead.py [N]
"""
from __future__ import annotations

import sys
import time

import requests

from harness import API_KEY, FakeProcess, fresh_sqlite, percentile, service_env, start_service, stop_service

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def timed(session: requests.Session, url: str, body: dict) -> float:
    started = time.perf_counter()
    response = session.post(url, json=body, headers=HEADERS, timeout=30)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    return elapsed


def main():
    fake = FakeProcess()
    fake.control("handles/alice/seed", {"n": 100})
    service = start_service(fresh_sqlite(), fake.url, workers=2, threads=128,
                            extra_env=service_env())
    try:
        direct, ours = requests.Session(), requests.Session()
        direct_url = fake.url + "/api/v1/get-tiktok-user-following"
        body = {"handle": "alice", "count": 30}
        for _ in range(100):  # warm up connections and code paths
            timed(direct, direct_url, body)
            timed(ours, service.url + "/v1/api/following", body)
        d, o = [], []
        for _ in range(N):  # interleaved: both see the same machine state
            d.append(timed(direct, direct_url, body))
            o.append(timed(ours, service.url + "/v1/api/following", body))
        print(f"requests: {N} each, page of 30 accounts, upstream answering at once")
        print(f"{'':24}{'p50 ms':>10}{'p99 ms':>10}")
        print(f"{'upstream directly':24}{percentile(d, 50):>10.2f}{percentile(d, 99):>10.2f}")
        print(f"{'through our service':24}{percentile(o, 50):>10.2f}{percentile(o, 99):>10.2f}")
        print(f"{'added by the service':24}{percentile(o, 50) - percentile(d, 50):>10.2f}"
              f"{percentile(o, 99) - percentile(d, 99):>10.2f}   (goal: < 2 ms at p50)")
    finally:
        stop_service(service)
        fake.stop()


if __name__ == "__main__":
    main()
