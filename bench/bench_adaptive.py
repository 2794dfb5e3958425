"""Adaptive checking vs fixed 15-minute checks, and the budget under 200 racing callers.

1. Simulation (no network): 100 watched handles of one key, 10 active (a follow every ~30
   min, Poisson) and 90 quiet (one a week), over a simulated week after a week of warm-up
   (the adaptive estimate reads the journal of the week before). Both policies spend the
   same credits: fixed checks each handle every 15 minutes; `auto` shares the same number
   of checks a day through integration.adaptive (the code the worker runs). Printed: mean
   and p95 time from follow to detection, and the checks (credits) each spent.
2. Live: our service under gunicorn (SQLite by default, BENCH_DATABASE_URL for PostgreSQL)
   and the fake upstream in its own process; 200 concurrent callers of one key with
   X-Daily-Credit-Budget at the edge. Printed: credits spent vs budget (the overshoot).

    .venv/bin/python bench/bench_adaptive.py [--seed 7] [--callers 200] [--budget 50]
"""
from __future__ import annotations

import argparse
import bisect
import datetime as dt
import heapq
import os
import random
import statistics
from concurrent.futures import ThreadPoolExecutor

import requests

from harness import API_KEY, FakeProcess, fresh_sqlite, percentile, service_env, start_service, stop_service
from integration import adaptive

WEEK = 7 * 86400.0
FIXED = 15 * 60.0
EPOCH = dt.datetime(2026, 1, 1)


def follows(rng: random.Random, mean_gap: float, until: float) -> list[float]:
    times, t = [], 0.0
    while True:
        t += rng.expovariate(1 / mean_gap)
        if t >= until:
            return times
        times.append(t)


def delays_fixed(handles: list[list[float]], start: float, end: float, rng: random.Random) -> tuple[list[float], int]:
    out, checks = [], 0
    for times in handles:
        phase = rng.uniform(0, FIXED)
        for t in times:
            if start <= t < end:
                out.append(phase + FIXED * ((t - phase) // FIXED + 1) - t)
        checks += int((end - start) / FIXED)
    return out, checks


def delays_auto(handles: list[list[float]], start: float, end: float, rng: random.Random) -> tuple[list[float], int]:
    """Event-driven: each handle's next check is planned by adaptive.intervals from the
    detections (the journal) of the last week, the key's checks shared as the worker does."""
    n = len(handles)
    per_day = adaptive.default_checks_per_day(n)  # what fixed 15-minute checks cost
    detected: list[list[float]] = [[] for _ in handles]
    last = [0.0] * n
    queue = [(rng.uniform(0, FIXED), i) for i in range(n)]
    heapq.heapify(queue)
    out, checks = [], 0
    while queue:
        now, i = heapq.heappop(queue)
        if now >= end:
            break
        times = handles[i]
        lo, hi = bisect.bisect_right(times, last[i]), bisect.bisect_right(times, now)
        for t in times[lo:hi]:
            detected[i].append(now)
            if start <= t < end:
                out.append(now - t)
        last[i] = now
        if now >= start:
            checks += 1
        moment = EPOCH + dt.timedelta(seconds=now)
        since = now - adaptive.HORIZON.total_seconds()
        rates = {j: (sum(1 for d in detected[j][-2000:] if d > since) + adaptive.PRIOR_FOLLOWS)
                 / (adaptive.HORIZON.total_seconds() / 86400 + adaptive.PRIOR_DAYS) for j in range(n)}
        # Same estimate as adaptive.follow_rate (inlined over floats for speed; checked below).
        if i == 0 and detected[0]:
            assert abs(rates[0] - adaptive.follow_rate([EPOCH + dt.timedelta(seconds=d) for d in detected[0]],
                                                       moment)) < 1e-9
        interval = adaptive.intervals(rates, per_day)[i].total_seconds()
        heapq.heappush(queue, (now + interval, i))
    return out, checks


def simulate(seed: int) -> None:
    rng = random.Random(seed)
    horizon = 2 * WEEK  # a warm-up week, then the measured week
    handles = [follows(rng, 30 * 60, horizon) for _ in range(10)] + [follows(rng, WEEK, horizon) for _ in range(90)]
    fixed, fixed_checks = delays_fixed(handles, WEEK, horizon, random.Random(seed + 1))
    auto, auto_checks = delays_auto(handles, WEEK, horizon, random.Random(seed + 2))
    print(f"simulation (seed {seed}): 100 handles (10 active ~30 min, 90 quiet ~1/week), measured week")
    print(f"{'policy':<10}{'follows':>9}{'credits':>9}{'mean min':>10}{'p95 min':>9}")
    for name, d, c in (("fixed 15", fixed, fixed_checks), ("auto", auto, auto_checks)):
        print(f"{name:<10}{len(d):>9}{c:>9}{statistics.mean(d) / 60:>10.2f}{percentile(d, 95) / 60:>9.2f}")
    print(f"auto / fixed mean: {statistics.mean(auto) / statistics.mean(fixed):.2f} (goal <= 0.5), "
          f"credits auto / fixed: {auto_checks / fixed_checks:.3f}")


def overshoot(callers: int, budget: int) -> None:
    fake = FakeProcess()
    database_url = os.environ.get("BENCH_DATABASE_URL") or fresh_sqlite()
    service = start_service(database_url, fake.url, extra_env=service_env(), workers=2, threads=64)
    try:
        fake.control("handles/alice/seed", {"n": 5})
        fake.control("config", {"delay": 0.2})
        headers = {"Authorization": f"Bearer {API_KEY}", "X-Daily-Credit-Budget": str(budget)}

        def call(_):
            return requests.post(service.url + "/v1/api/following", json={"handle": "alice"}, headers=headers,
                                 timeout=60).status_code

        with ThreadPoolExecutor(callers) as pool:
            statuses = list(pool.map(call, range(callers)))
        spent = requests.get(fake.url + "/_fake/credits", timeout=10).json()["total"]
        print(f"budget edge: {callers} concurrent callers, budget {budget}: {statuses.count(200)} answered, "
              f"{statuses.count(402)} got 402, credits spent {spent}, overshoot {max(spent - budget, 0)}")
    finally:
        stop_service(service)
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--callers", type=int, default=200)
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--skip-live", action="store_true")
    args = parser.parse_args()
    simulate(args.seed)
    if not args.skip_live:
        overshoot(args.callers, args.budget)


if __name__ == "__main__":
    main()
