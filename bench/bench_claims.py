"""The worker's watch claim as the table grows (issue 14 item 3): EXPLAIN (ANALYZE, BUFFERS)
of `claims.watch_claim` on PostgreSQL at 1k, 100k and 1M watches (a script, not a test).

Each size is a fresh database: N watches, one subscription each, their next polls spread
evenly over one 5-minute interval (so 1/300 of them are due a second in), plus as many
paused watches (no next poll) and, when --stale, N/10 due watches with no key left (not
claimable, but in the walk). The claim takes 100 (a worker's free threads). Printed per
size: the plan's shape, buffers read, rows the index walk visited, and the server's
execution time (noisy on this shared machine: read the buffers and rows, which are exact).

    .venv/bin/python bench/bench_claims.py [--sizes 1000,100000,1000000] [--stale]
"""
from __future__ import annotations

import argparse
import datetime as dt
import re

from sqlalchemy import create_engine, text
from sqlalchemy.dialects import postgresql

from harness import postgres_cluster
from integration.claims import watch_claim
from integration.migrate import upgrade

T0 = dt.datetime(2026, 1, 1)

FILL = """
INSERT INTO watches (owner_hash, handle, created_at, watermark_exclusive, last_sequence, status, truncations,
                     api_key_enc, next_poll_at, check_auto)
SELECT md5((i % 1000)::text), 'h' || i, :t0, true, 0, 'active', 0,
       CASE WHEN i <= :stale THEN NULL ELSE 'k' END,
       CASE WHEN i <= :stale THEN :t0 - interval '1 second'
            WHEN i <= :stale + :n THEN :t0 + ((i - :stale) * 300.0 / :n) * interval '1 second'
            ELSE NULL END,
       false
FROM generate_series(1, :stale + 2 * :n) AS i;
INSERT INTO subscriptions (id, watch_id, owner_hash, platform, target_url, secret_enc, created_at, event, target_hash)
SELECT md5(id::text), id, owner_hash, 'zapier', 'https://example.invalid/' || id, 's', :t0, 'new_following',
       md5('t' || id::text)
FROM watches;
ANALYZE watches; ANALYZE subscriptions;
"""


def explain(url: str, limit: int) -> str:
    statement = watch_claim(T0 + dt.timedelta(seconds=1), limit, dt.timedelta(minutes=5), "bench",
                            T0 + dt.timedelta(seconds=11))
    compiled = statement.compile(dialect=postgresql.psycopg.dialect(), compile_kwargs={"render_postcompile": True})
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + str(compiled),
                                        compiled.params).scalars().all()
            conn.rollback()  # ANALYZE ran the UPDATE
    finally:
        engine.dispose()
    return "\n".join(plan)


def fill(url: str, n: int, stale: int) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in FILL.split(";"):
                if statement.strip():
                    conn.execute(text(statement), {"n": n, "stale": stale, "t0": T0})
    finally:
        engine.dispose()


def summary(plan: str) -> str:
    walked = re.search(r"Index Scan using ix_watches_next_poll[^\n]*rows=(\d+)", plan)
    shared = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", plan)
    took = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return (f"index walk rows {walked.group(1) if walked else '?'}, "
            f"buffers {shared.group(0).split(': ', 1)[1] if shared else '?'}, "
            f"execution {took.group(1) if took else '?'} ms")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--stale", action="store_true", help="also N/10 due watches with no key")
    parser.add_argument("--plans", action="store_true", help="print whole plans")
    args = parser.parse_args()
    with postgres_cluster() as pg:
        if pg is None:
            print("PostgreSQL not found")
            return
        for n in (int(s) for s in args.sizes.split(",")):
            url = pg.database(f"claims{n}")
            upgrade(url)
            fill(url, n, n // 10 if args.stale else 0)
            plan = explain(url, args.limit)
            print(f"{n:>9} watches: {summary(plan)}")
            if args.plans or n == int(args.sizes.split(",")[-1]):
                print(plan)


if __name__ == "__main__":
    main()
