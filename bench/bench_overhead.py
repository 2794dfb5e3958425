"""Overhead of our service, side by side with the baseline commit: p50/p99 of
POST /v1/api/following against calling the fake upstream directly (same client, one
keep-alive requests.Session each, interleaved, the upstream answering at once), and the CPU
the service's gunicorn workers spend per call (utime + stime from /proc). Goal: under 1 ms
added at p50 (issue 14 item 2).

    .venv/bin/python bench/bench_overhead.py [N] [--baseline COMMIT] [--granian]

--granian: also today's code behind granian (a Rust HTTP server; not a dependency: install it
beside, e.g. `pip install --target DIR granian` and PYTHONPATH=DIR), 2 workers x 128 blocking
threads, to weigh a change of server on the same machine state.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import requests

from harness import (API_KEY, GRANIAN_MISSING, ROOT, FakeProcess, baseline_tree, fresh_sqlite, have_granian, percentile,
                     seeded_fake, service_env, start_granian, start_service, stop_service)

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
BODY = {"handle": "alice", "count": 30}
DIRECT_PATH = "/api/v1/get-tiktok-user-following"  # the fake upstream's
ROUTE = "/v1/api/following"  # the action's
TICKS = os.sysconf("SC_CLK_TCK")


def timed(session: requests.Session, url: str, body: dict) -> float:
    started = time.perf_counter()
    response = session.post(url, json=body, headers=HEADERS, timeout=30)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    return elapsed


def warmed(direct_url: str, our_url: str) -> tuple[requests.Session, requests.Session]:
    """A kept-alive session to each, after 100 calls each (connections and code paths warm)."""
    direct, ours = requests.Session(), requests.Session()
    for _ in range(100):
        timed(direct, direct_url, BODY)
        timed(ours, our_url, BODY)
    return direct, ours


def interleaved(sessions: tuple[requests.Session, requests.Session], direct_url: str, our_url: str,
                n: int) -> tuple[list[float], list[float]]:
    """Wall ms of n calls each, direct then ours in turn: both see the same machine state."""
    (direct, ours), d, o = sessions, [], []
    for _ in range(n):
        d.append(timed(direct, direct_url, BODY))
        o.append(timed(ours, our_url, BODY))
    return d, o


def service_cpu(master_pid: int) -> float:
    """CPU seconds of gunicorn's workers (the master's children) so far."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:  # ppid
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICKS


def measure(tree: Path, fake: FakeProcess, n: int, granian: bool = False) -> dict:
    service = start_granian(tree, fake) if granian else \
        start_service(fresh_sqlite(tree), fake.url, workers=2, threads=128, root=tree,
                      extra_env=service_env(PYTHONPATH=str(tree)))
    try:
        direct_url, our_url = fake.url + DIRECT_PATH, service.url + ROUTE
        sessions = warmed(direct_url, our_url)
        cpu_before = service_cpu(service.process.pid)
        d, o = interleaved(sessions, direct_url, our_url, n)
        cpu = (service_cpu(service.process.pid) - cpu_before) * 1000 / n
        return {"direct": percentile(d, 50), "ours": percentile(o, 50), "added50": percentile(o, 50) - percentile(d, 50),
                "added99": percentile(o, 99) - percentile(d, 99), "cpu": cpu}
    finally:
        stop_service(service)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=2000)
    parser.add_argument("--baseline", default="e4e027f")
    parser.add_argument("--granian", action="store_true")
    args = parser.parse_args()
    if args.granian and not have_granian():
        parser.error(GRANIAN_MISSING)
    fake = seeded_fake()
    try:
        with baseline_tree(args.baseline) as base:
            rows = {"baseline": measure(Path(base), fake, args.n), "now": measure(ROOT, fake, args.n)}
            if args.granian:
                rows["granian"] = measure(ROOT, fake, args.n, granian=True)
    finally:
        fake.stop()
    print(f"action: {args.n} calls each, page of 30 accounts, upstream answering at once (baseline {args.baseline})")
    print(f"{'':10}{'direct p50':>12}{'ours p50':>10}{'added p50':>11}{'added p99':>11}{'service CPU/call':>18}")
    for side, r in rows.items():
        print(f"{side:10}{r['direct']:>12.2f}{r['ours']:>10.2f}{r['added50']:>11.2f}{r['added99']:>11.2f}"
              f"{r['cpu']:>15.2f} ms")
    print("goal: added p50 < 1 ms")


if __name__ == "__main__":
    main()
