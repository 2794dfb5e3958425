""""Does A follow B?" (POST /v1/api/following/check) against the fake upstream in its own
process, through gunicorn: credits spent (X-Credits-Used, and the fake's own count) and
latency p50/p99 when the target is found on page k, and for a "no" (whole list read, and cut
at the page cap). The upstream answers at once, so the latency is our overhead plus the fake's.

    .venv/bin/python bench/bench_check.py [N]
"""
from __future__ import annotations

import sys
import time

import requests

from harness import API_KEY, FakeProcess, fresh_sqlite, percentile, service_env, start_service, stop_service

N = int(sys.argv[1]) if len(sys.argv) > 1 else 200
HEADERS = {"Authorization": f"Bearer {API_KEY}"}
PAGE = 100  # the check asks for the most the upstream honours


def main():
    fake = FakeProcess()
    seeded = fake.control("handles/alice/seed", {"n": 12 * PAGE})  # deeper than the page cap (10)
    fake.control("handles/bob/seed", {"n": 5 * PAGE - 1})          # a "no" over the whole list
    service = start_service(fresh_sqlite(), fake.url, workers=2, threads=32, extra_env=service_env())
    url = service.url + "/v1/api/following/check"
    cases = [(f"found on page {k}", "alice", seeded[(k - 1) * PAGE + PAGE // 2]["user"]["uniqueId"]) for k in (1, 2, 3, 5, 10)]
    cases += [("no, whole list (5 pages)", "bob", "nobody.here"), ("no, cut at the cap (10)", "alice", "nobody.here")]
    try:
        session = requests.Session()
        print(f"requests: {N} per case; upstream answering at once; {PAGE} accounts per page")
        print(f"{'case':28}{'credits':>8}{'complete':>10}{'p50 ms':>10}{'p99 ms':>10}")
        for label, handle, target in cases:
            times, answer = [], None
            for i in range(N + 10):
                started = time.perf_counter()
                response = session.post(url, json={"handle": handle, "target": target}, headers=HEADERS, timeout=60)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, response.text
                answer = response.json()
                credits = int(response.headers["X-Credits-Used"])
                assert credits == answer["pagesRead"]
                if i >= 10:  # warm-up excluded
                    times.append(elapsed)
            print(f"{label:28}{credits:>8}{str(answer['complete']):>10}"
                  f"{percentile(times, 50):>10.2f}{percentile(times, 99):>10.2f}")
    finally:
        stop_service(service)
        fake.stop()


if __name__ == "__main__":
    main()
