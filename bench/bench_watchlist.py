"""A 50-handle watchlist through the polling trigger (POST /v1/zapier/triggers/new-following
with `handles`), against the fake upstream in its own process, through gunicorn: latency
p50/p99 of a poll that refreshes every handle (REFRESH_WINDOW_SECONDS=0), with the upstream
answering at once and after 1 s, and the upstream requests (and credits) per poll.

    .venv/bin/python bench/bench_watchlist.py [N_FAST] [N_SLOW]
"""
from __future__ import annotations

import sys
import time

import requests

from harness import API_KEY, FakeProcess, fresh_sqlite, percentile, service_env, start_service, stop_service

N_FAST = int(sys.argv[1]) if len(sys.argv) > 1 else 30
N_SLOW = int(sys.argv[2]) if len(sys.argv) > 2 else 8
HANDLES = [f"watch{i:02d}" for i in range(50)]
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def main():
    fake = FakeProcess()
    for handle in HANDLES:
        fake.control(f"handles/{handle}/seed", {"n": 30})
    service = start_service(fresh_sqlite(), fake.url, workers=2, threads=8, extra_env=service_env())
    url = service.url + "/v1/zapier/triggers/new-following"
    session = requests.Session()

    def upstream_requests() -> int:
        return len(requests.get(f"{fake.url}/_fake/requests", timeout=30).json())

    def poll() -> tuple[float, int, int, int]:
        before = upstream_requests()
        started = time.perf_counter()
        response = session.post(url, json={"handles": HANDLES, "limit": 100}, headers=HEADERS, timeout=60)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, response.text
        return elapsed, upstream_requests() - before, int(response.headers["X-Credits-Used"]), len(response.json())

    try:
        poll()  # the 50 baselines, not measured
        print(f"watchlist of {len(HANDLES)} handles, each following 30; every poll refreshes all of them "
              "(window 0); 5 handles follow one new account before each poll")
        print(f"{'upstream delay':16}{'polls':>6}{'p50 ms':>10}{'p99 ms':>10}{'requests/poll':>15}"
              f"{'credits/poll':>14}{'items':>7}")
        for delay, n in ((0.0, N_FAST), (1.0, N_SLOW)):
            fake.control("config", {"delay": delay})
            times, calls, credits, items = [], set(), set(), 0
            for i in range(n):
                for handle in HANDLES[i % 10::10]:
                    fake.control(f"handles/{handle}/follow", {})
                elapsed, made, paid, items = poll()
                times.append(elapsed)
                calls.add(made)
                credits.add(paid)
            print(f"{f'{delay * 1000:.0f} ms':16}{n:>6}{percentile(times, 50):>10.1f}{percentile(times, 99):>10.1f}"
                  f"{'/'.join(map(str, sorted(calls))):>15}{'/'.join(map(str, sorted(credits))):>14}{items:>7}")
    finally:
        fake.control("config", {"delay": 0})
        stop_service(service)
        fake.stop()


if __name__ == "__main__":
    main()
