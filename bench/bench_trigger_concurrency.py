"""Trigger concurrency, side by side with the baseline commit: 200 concurrent callers poll the
new-following trigger, each on its own handle, against an upstream answering in 1 s, on one
instance started as `make run` starts it (gunicorn.conf.py, SQLite). With no refresh window
every call pays a refresh; with the default one (60 s) most answer from the journal. Goal:
>= 180 req/s, as the action (issue 14 item 1).

    .venv/bin/python bench/bench_trigger_concurrency.py [CLIENTS] [SECONDS] [--baseline COMMIT] [--postgres]

--postgres: the same on a throwaway PostgreSQL cluster (a fresh database per run), where
SQLite's single writer does not bound the calls that pay a refresh.

Two throughput figures: the calls completed inside the window / its length, and callers / mean
latency (Little's law for a closed loop with no think time). The first is quantized: the callers
start together, so each completes floor(window / latency) calls (at 15 s, 14 calls for a latency
up to 1.071 s, 13 past it: 186.7 or 173.3 req/s, nothing between for a uniform latency); the
second is what the goal (>= 180 req/s, a mean latency <= 1.111 s) is about.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import contextlib
import itertools

from harness import (ROOT, FakeProcess, baseline_tree, closed_loop, fresh_sqlite, migrated, percentile,
                     postgres_cluster, service_env, start_service, steady_rate, stop_service)

DELAY = 1.0


def run(tree: Path, fake: FakeProcess, handles: list[str], window: int, seconds: float, database) -> str:
    import gunicorn_settings

    service = start_service(database(tree), fake.url, workers=gunicorn_settings.WORKERS,
                            threads=gunicorn_settings.THREADS, root=tree,
                            extra_env=service_env(PYTHONPATH=str(tree), REFRESH_WINDOW_SECONDS=window))
    try:
        latencies, errors = closed_loop(service.url, "/v1/api/triggers/new-following",
                                        [{"handle": h} for h in handles], seconds, warm_up=True)
    finally:
        stop_service(service)
    p50 = percentile(latencies, 50) * 1000 if latencies else float("nan")
    return (f"{len(latencies) / seconds:>8.1f} req/s  {steady_rate(len(handles), latencies):>6.1f} req/s (callers / mean latency)"
            f"  p50 {p50:>6.0f} ms  errors {len(errors)}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("clients", nargs="?", type=int, default=200)
    parser.add_argument("seconds", nargs="?", type=float, default=15.0)
    parser.add_argument("--baseline", default="e4e027f")
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    fake = FakeProcess()
    handles = [f"crowd{i}" for i in range(args.clients)]
    for handle in handles:
        fake.control(f"handles/{handle}/seed", {"n": 30})
    fake.control("config", {"delay": DELAY})
    rows = []
    try:
        with baseline_tree(args.baseline) as base, \
                (postgres_cluster() if args.postgres else contextlib.nullcontext()) as pg:
            numbers = itertools.count()
            # Each tree's own schema (the baseline's migrations end earlier).
            database = (lambda tree: migrated(pg.database(f"trig{next(numbers)}"), tree)) if pg else fresh_sqlite
            for window in (0, 60):
                for side, tree in (("baseline", Path(base)), ("now", ROOT)):
                    rows.append(f"{side:9} window {window:>2} s: "
                                f"{run(tree, fake, handles, window, args.seconds, database)}")
    finally:
        fake.stop()
    print(f"{args.clients} callers on {args.clients} handles, upstream {DELAY:.0f} s, {args.seconds:.0f} s each, "
          f"{'PostgreSQL' if args.postgres else 'SQLite'} "
          f"(baseline {args.baseline}); goal >= {0.9 * args.clients / DELAY:.0f} req/s")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
