"""A simulated run at scale on a throwaway PostgreSQL (a script, not a test; docs/SCALING.md
quotes its full run).

    .venv/bin/python bench/bench_scale.py          # quick (make bench): 10,000 watches, 45 s run
    .venv/bin/python bench/bench_scale.py --full   # make bench-scale: 100,000 watches / 10,000 keys,
                                                   # 150 s run, claim SQL at 1k / 100k / 1M rows (< 10 min)

1. Fill: a few template watches get their baseline through the real code (watches.open_watch
   against the fake: packed known ids via integration/known.py, top ids, samples), then SQL
   (generate_series) copies them into N watches over N / 10 keys (each key's API key
   encrypted, its owner hash as the service computes it): a share with one subscription
   (polled by the worker, all due at once: a backlog), the others trigger-only (no key
   stored, not polled); every watch with a journal of a few events. ANALYZE.
2. Run: the real worker process(es) (`python -m integration.worker`, as bench_worker.py starts
   them) against the fake upstream answering in 500 ms, while the fake's handles gain a few
   follows per second (so refreshes write events and deliveries, sent to a local receiver).
   After a warm-up, over the measured window: refreshes/s per worker process, CPU per refresh
   of the worker and of PostgreSQL (all its processes, /proc), WAL bytes per refresh
   (pg_current_wal_lsn), growth per refresh of each table (pg_total_relation_size),
   connections (pg_stat_activity, sampled every second).
3. The claim statement alone (the UPDATE claims.claim_watches sends, captured from the real
   function) under EXPLAIN (ANALYZE, BUFFERS) in a rolled-back transaction, on databases of
   1k, 100k and 1M watches (quick: 1k and 10k), half of the subscribed ones due.

The fake upstream runs in this process (as in bench_worker.py); the machine is shared, so
CPU figures are process CPU, and rates are bounded by the cores the run got.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import event, text

from bench_worker import start_worker, stop_worker  # its lifted send limits: one receiver host
from harness import percentile, postgres_cluster
from fakeupstream import FakeDumpling, make_account
from integration import claims, watches
from integration.worker import WORKER_DB_POOL
from integration.accounts import flatten
from integration.config import Settings
from integration.delivery import new_secret
from integration.migrate import upgrade
from integration.models import Base
from integration.platforms import Platform
from integration.security import key_hash
from integration.services import Services
from integration.upstream import Meter
from tests.receiver import Answer, Receiver

TEMPLATES = 200          # distinct handles at the fake; watch g copies template g % TEMPLATES
FOLLOWS_PER_HANDLE = 30  # a baseline page of 30: 30 known ids per watch
WATCHES_PER_KEY = 10
UPSTREAM_DELAY = 0.5
CLAIM_LIMIT = 100        # worker.MAX_BATCH: the most one claim takes
TABLES = sorted(Base.metadata.tables)
# The subscribed share is all due at the start: a backlog the run must not exhaust.
QUICK = dict(watches=10_000, subscribed_pct=50, concurrency=[32], seconds=30, warmup=10, claim_sizes=[1_000, 10_000])
FULL = dict(watches=100_000, subscribed_pct=50, concurrency=[32, 128], seconds=90, warmup=15,
            claim_sizes=[1_000, 100_000, 1_000_000])

# Every watch's columns but its identity and schedule come from its template (SQL below).
_STATE = ("watermark", "top_ids", "watermark_exclusive", "detection_mode", "samples", "last_refresh_at",
          "status", "truncations", "check_auto")
_FILL_WATCHES = text(f"""
    INSERT INTO watches (id, owner_hash, handle, created_at, last_used_at, last_sequence,
                         api_key_enc, next_poll_at, {", ".join(_STATE)})
    SELECT :first + g, k.owner_hash, t.handle, t.created_at, t.created_at, :journal,
           CASE WHEN g % 100 < :subscribed_pct THEN k.key_enc END,
           CASE WHEN g % 100 < :subscribed_pct
                THEN :due_from + random() * :due_spread * interval '1 second' END,
           {", ".join("t." + c for c in _STATE)}
    FROM generate_series(0, :n - 1) g
    JOIN bench_keys k ON k.k = g / :per_key
    JOIN watches t ON t.id = 1 + g % :templates""")
_FILL_KNOWN = text("""
    INSERT INTO known_segments (watch_id, low, ids)
    SELECT :first + g, s.low, s.ids FROM generate_series(0, :n - 1) g
    JOIN known_segments s ON s.watch_id = 1 + g % :templates""")
_FILL_SUBSCRIPTIONS = text("""
    INSERT INTO subscriptions (id, watch_id, owner_hash, platform, target_url, secret_enc, created_at, event,
                               target_hash)
    SELECT 'sub_' || lpad(g::text, 24, '0'), w.id, w.owner_hash, 'zapier', :target, :secret_enc, w.created_at,
           'new_following', :target_hash
    FROM generate_series(0, :n - 1) g JOIN watches w ON w.id = :first + g
    WHERE g % 100 < :subscribed_pct""")
_FILL_JOURNAL = text("""
    INSERT INTO events (watch_id, sequence, account_id, detected_at, payload, event)
    SELECT :first + g, e, (p.value ->> 'id'), now() AT TIME ZONE 'UTC', p.value::text, 'new_following'
    FROM generate_series(0, :n - 1) g
    CROSS JOIN LATERAL jsonb_array_elements(CAST(:payloads AS jsonb)) WITH ORDINALITY AS p(value, e)""")


def make_templates(url: str, fake: FakeDumpling) -> None:
    """TEMPLATES watches with ids 1..TEMPLATES, their baseline taken by the real code."""
    key = "template-key"
    fake.add_key(key)
    svc = Services.build(Settings.from_env(database_url=url, dumpling_base_url=fake.url))
    owner = svc.owner(key)
    for i in range(TEMPLATES):
        fake.seed(f"creator_{i}", FOLLOWS_PER_HANDLE)
        watches.open_watch(svc, owner, f"creator_{i}", key, Platform.ZAPIER, Meter())
    svc.engine.dispose()


def fill(url: str, fake: FakeDumpling | None, n: int, *, subscribed_pct: int, journal: int, known: bool,
         due: tuple[float, float], target: str) -> Services:
    """Templates, then `n` copies over n / WATCHES_PER_KEY keys (added to the fake when given).
    Subscribed watches are due at random times between `due` seconds from now (negative: past)."""
    upgrade(url)
    template_fake = fake or FakeDumpling().start()
    make_templates(url, template_fake)
    if fake is None:
        template_fake.stop()
    svc = Services.build(Settings.from_env(database_url=url))
    keys = [f"bench-key-{k}" for k in range(-(-n // WATCHES_PER_KEY))]
    for key in keys if fake else ():
        fake.add_key(key)
    payloads = json.dumps([flatten(make_account(10_000_000 + e)) for e in range(journal)])
    now = svc.clock()
    args = dict(first=TEMPLATES + 1, n=n, templates=TEMPLATES, per_key=WATCHES_PER_KEY,
                subscribed_pct=subscribed_pct, journal=journal, due_from=now + dt.timedelta(seconds=due[0]),
                due_spread=due[1] - due[0], target=target, target_hash=hashlib.sha256(target.encode()).hexdigest(),
                secret_enc=svc.vault.encrypt(new_secret()), payloads=payloads)
    secret = svc.settings.secret_key
    with svc.engine.begin() as conn:
        conn.execute(text("CREATE TEMPORARY TABLE bench_keys (k int PRIMARY KEY, owner_hash text, key_enc text)"
                          " ON COMMIT DROP"))
        conn.execute(text("INSERT INTO bench_keys VALUES (:k, :owner_hash, :key_enc)"),
                     [{"k": k, "owner_hash": key_hash(secret, key), "key_enc": svc.vault.encrypt(key)}
                      for k, key in enumerate(keys)])
        for statement in (_FILL_WATCHES, _FILL_KNOWN if known else None, _FILL_SUBSCRIPTIONS, _FILL_JOURNAL):
            if statement is not None:
                conn.execute(statement, args)
        conn.execute(text("SELECT setval(pg_get_serial_sequence('watches', 'id'), :last)"), {"last": TEMPLATES + n})
    autocommit = svc.engine.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn:
        conn.execute(text("VACUUM ANALYZE"))
    return svc


# ---------------------------------------------------------------- the run


class Postgres:
    """What the run reads of the server: WAL position, table sizes, connections, CPU."""

    def __init__(self, svc: Services):
        self.engine = svc.engine.execution_options(isolation_level="AUTOCOMMIT")

    def scalar(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def snapshot(self) -> dict:
        with self.engine.connect() as conn:
            sizes = {t: conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": t}).scalar() for t in TABLES}
            pids = conn.execute(text("SELECT pid FROM pg_stat_activity")).scalars().all()
            counters = conn.execute(text(
                "SELECT xact_commit + xact_rollback AS transactions, tup_inserted, tup_updated, tup_deleted,"
                " w.wal_records, w.wal_fpi FROM pg_stat_database, pg_stat_wal w"
                " WHERE datname = current_database()")).mappings().one()
            return {**counters, "lsn": conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar(), "sizes": sizes,
                    "database": conn.execute(text("SELECT pg_database_size(current_database())")).scalar(),
                    "cpu": sum(cpu_seconds(pid) for pid in pids), "at": time.monotonic()}

    def client_connections(self) -> int:
        """Client sessions on this database, not counting the one asking."""
        return self.scalar("SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()"
                           " AND backend_type = 'client backend'")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc; 0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def follow_now_and_then(fake: FakeDumpling, per_second: float, stop: threading.Event) -> None:
    """New follows on random handles: refreshes then write events and deliveries."""
    rng = random.Random(14)
    while not stop.wait(1 / per_second):
        fake.follow(f"creator_{rng.randrange(TEMPLATES)}")


def run(svc: Services, fake: FakeDumpling, receiver: Receiver, args, log: Path) -> None:
    """One measured run per WORKER_CONCURRENCY asked, on the same database, one after the other."""
    fake.delay = UPSTREAM_DELAY
    stop = threading.Event()
    threading.Thread(target=follow_now_and_then, args=(fake, args.follows_per_second, stop), daemon=True).start()
    try:
        for concurrency in args.concurrency:
            run_one(svc, fake, receiver, args, concurrency, log)
    finally:
        stop.set()


def run_one(svc: Services, fake: FakeDumpling, receiver: Receiver, args, concurrency: int, log: Path) -> None:
    pg = Postgres(svc)
    workers = [start_worker(svc.settings.database_url, fake.url, concurrency, log) for _ in range(args.workers)]
    connections: list[int] = []
    try:
        time.sleep(args.warmup)
        before, credits, sent, cpu = pg.snapshot(), fake.credits_spent(), receiver.started, worker_cpu(workers)
        while time.monotonic() - before["at"] < args.seconds:
            connections.append(pg.client_connections())
            time.sleep(1)
        after, worker_seconds = pg.snapshot(), worker_cpu(workers) - cpu
        refreshes, sent = fake.credits_spent() - credits, receiver.started - sent
    finally:
        for worker in workers:
            stop_worker(worker)
    elapsed = after["at"] - before["at"]
    wal = float(pg.scalar("SELECT pg_wal_lsn_diff(:b, :a)", b=after["lsn"], a=before["lsn"]))
    left = pg.scalar("SELECT count(*) FROM watches WHERE next_poll_at <= now() AT TIME ZONE 'UTC'")
    rate, per_refresh = refreshes / elapsed, worker_seconds / refreshes
    print(f"\n2. run: {args.workers} worker process(es), WORKER_CONCURRENCY {concurrency}, upstream "
          f"{UPSTREAM_DELAY * 1000:.0f} ms, {args.follows_per_second}/s new follows, {elapsed:.0f} s measured "
          f"after {args.warmup:.0f} s warm-up; worker log {log}")
    print(f"   refreshes/s: {rate:.1f} ({rate / args.workers:.1f} per worker process; ceiling "
          f"{concurrency / UPSTREAM_DELAY:.0f} per process); deliveries sent: {sent}; still due at the end: "
          f"{left:,}{'' if left else ' (the backlog ran out: the rate is a floor)'}")
    print(f"   CPU per refresh: worker {per_refresh * 1000:.2f} ms ({1 / per_refresh:.0f} refreshes per worker "
          f"CPU-second), PostgreSQL {(after['cpu'] - before['cpu']) / refreshes * 1000:.2f} ms (all its processes)")
    per = {name: (after[name] - before[name]) / refreshes
           for name in ("transactions", "tup_inserted", "tup_updated", "tup_deleted", "wal_records", "wal_fpi")}
    print(f"   WAL: {wal / refreshes:,.0f} B per refresh ({wal / elapsed / 1e6:.2f} MB/s): {per['wal_records']:.0f} "
          f"records, {per['wal_fpi']:.1f} full-page images (a page's first change after a checkpoint)")
    print(f"   per refresh: {per['transactions']:.1f} transactions (pg_stat_database, all of them), rows "
          f"inserted {per['tup_inserted']:.1f}, updated {per['tup_updated']:.1f}, deleted {per['tup_deleted']:.1f}")
    print(f"   database: {before['database'] / 1e6:,.1f} MB -> {after['database'] / 1e6:,.1f} MB "
          f"({(after['database'] - before['database']) / refreshes:,.0f} B per refresh)")
    for table in TABLES:
        grown = after["sizes"][table] - before["sizes"][table]
        if before["sizes"][table] > 100_000 or grown:
            print(f"     {table:18} {before['sizes'][table] / 1e6:9.1f} MB  {grown / refreshes:+9.0f} B per refresh")
    print(f"   client connections (sampled each second): max {max(connections)}, median "
          f"{percentile(connections, 50):.0f}; the worker's pool allows "
          f"{min(2 * concurrency + 2, WORKER_DB_POOL)} + 8 per process")


def worker_cpu(workers) -> float:
    return sum(cpu_seconds(w.pid) for w in workers)


# ---------------------------------------------------------------- the claim statement


def claim_statement(svc: Services) -> tuple[str, dict, dict]:
    """The UPDATE claims.claim_watches sends (captured from the real function, claiming as of
    a moment when nothing is due, so nothing changes), its parameters, and which of them are
    that moment or that moment plus the interval."""
    captured: list[tuple[str, dict]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE WATCHES"):
            captured.append((statement, dict(parameters)))

    past = dt.datetime(2000, 1, 1)
    event.listen(svc.engine, "before_cursor_execute", capture)
    try:
        assert claims.claim_watches(svc, past, CLAIM_LIMIT) == []
    finally:
        event.remove(svc.engine, "before_cursor_execute", capture)
    statement, params = captured[0]
    interval = dt.timedelta(seconds=svc.settings.poll_interval_seconds)
    moments = {name: value - past for name, value in params.items() if value in (past, past + interval)}
    return statement, params, moments


def explain_claim(svc: Services, repeat: int) -> tuple[list[float], int, dict]:
    """Execution times (ms) of the claim under EXPLAIN ANALYZE, each rolled back; rows claimed
    and the buffers of the last one."""
    statement, params, moments = claim_statement(svc)
    times, rows, plan = [], 0, {}
    with svc.engine.connect() as conn:
        for _ in range(repeat):
            now = svc.clock()
            values = {**params, **{name: now + offset for name, offset in moments.items()}}
            transaction = conn.begin()
            try:
                plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, values).scalar()[0]
            finally:
                transaction.rollback()
            times.append(plan["Execution Time"])
    update = plan["Plan"]
    rows = update.get("Actual Rows", 0) or sum(p.get("Actual Rows", 0) for p in update.get("Plans", []))
    buffers = {k: update.get(k, 0) for k in ("Shared Hit Blocks", "Shared Read Blocks")}
    return times, rows, buffers


def claim_latency(cluster, sizes: list[int], subscribed_pct: int, target: str) -> None:
    print(f"\n3. the claim statement alone (LIMIT {CLAIM_LIMIT}), EXPLAIN ANALYZE, rolled back; {subscribed_pct}% of "
          "watches subscribed, half of those due")
    for n in sizes:
        started = time.monotonic()
        url = cluster.database(f"claims_{n}")
        # Due over the last 5 minutes and the next 5 (a worker keeping up); no known ids or
        # journal: the claim reads neither.
        svc = fill(url, None, n, subscribed_pct=subscribed_pct, journal=0, known=False, due=(-300, 300),
                   target=target)
        filled = time.monotonic() - started
        times, rows, buffers = explain_claim(svc, 30)
        size = Postgres(svc).scalar("SELECT pg_total_relation_size('watches')")
        print(f"   {n:>9,} watches ({size / 1e6:,.0f} MB, filled in {filled:.0f} s): p50 {percentile(times, 50):.2f} ms,"
              f" p99 {percentile(times, 99):.2f} ms, {rows} rows claimed, buffers {buffers}")
        svc.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the documented run: " + json.dumps(FULL))
    parser.add_argument("--watches", type=int)
    parser.add_argument("--seconds", type=float, help="measured window of the run")
    parser.add_argument("--warmup", type=float)
    parser.add_argument("--claim-sizes", type=int, nargs="*")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--concurrency", type=int, nargs="+", help="WORKER_CONCURRENCY of each (one run per value)")
    parser.add_argument("--subscribed-pct", type=int, help="watches with a subscription, %%")
    parser.add_argument("--journal", type=int, default=3, help="events per watch")
    parser.add_argument("--follows-per-second", type=float, default=2.0)
    args = parser.parse_args()
    for name, value in (FULL if args.full else QUICK).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the finally blocks: stop our workers
    with postgres_cluster() as cluster:
        if cluster is None:
            print("bench_scale: no PostgreSQL server binary installed; SKIPPED")
            return
        fake = FakeDumpling().start()
        receiver = Receiver(default=Answer(204), keep=False)
        started = time.monotonic()
        svc = fill(cluster.database("scale"), fake, args.watches, subscribed_pct=args.subscribed_pct,
                   journal=args.journal, known=True, due=(-300, 0), target=receiver.url)
        polled = Postgres(svc).scalar("SELECT count(*) FROM watches WHERE next_poll_at IS NOT NULL")
        print(f"1. filled {args.watches:,} watches over {-(-args.watches // WATCHES_PER_KEY):,} keys in "
              f"{time.monotonic() - started:.0f} s: {polled:,} with a subscription (all due), {args.journal} events "
              f"each, {FOLLOWS_PER_HANDLE} known ids each, {TEMPLATES} handles at the fake")
        run(svc, fake, receiver, args, Path(tempfile.mkdtemp(prefix="bench_scale_")) / "worker.log")
        svc.engine.dispose()
        fake.stop()
        claim_latency(cluster, args.claim_sizes, args.subscribed_pct, receiver.url)


if __name__ == "__main__":
    main()
