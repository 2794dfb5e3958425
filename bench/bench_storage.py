"""Storage per watch: 10,000 known accounts and 1,000 journal events, on SQLite (and on
PostgreSQL when TEST_DATABASE_URL is set). Also times the known-account lookup a refresh
does for one page against those 10,000 ids.

    .venv/bin/python bench/bench_storage.py
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from sqlalchemy import text

from harness import fresh_sqlite
from fakeupstream import make_account
from integration.accounts import flatten
from integration.db import make_engine, make_session_factory
from integration.migrate import upgrade
from integration.models import Event, KnownAccount, Watch, utcnow
from integration.services import Services
from integration.config import Settings
from integration import watches

KNOWN, EVENTS = 10_000, 1_000


def fill(url: str) -> int:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with sessions.begin() as s:
        w = Watch(owner_hash="x" * 64, handle="bigfollower", watermark=1_800_000_000,
                  top_ids=json.dumps([str(6900000000000000000 + i) for i in range(200)]),
                  baseline=json.dumps([flatten(make_account(i)) for i in range(30)]), last_sequence=EVENTS)
        s.add(w)
        s.flush()
        s.add_all(KnownAccount(watch_id=w.id, account_id=str(6900000000000000000 + i)) for i in range(KNOWN))
        now = utcnow()
        s.add_all(Event(watch_id=w.id, sequence=i + 1, account_id=str(6900000000000000000 + i), detected_at=now,
                        payload=json.dumps(flatten(make_account(i)))) for i in range(EVENTS))
        watch_id = w.id
    engine.dispose()
    return watch_id


def lookup_ms(url: str, watch_id: int) -> float:
    svc = Services.build(Settings.from_env(database_url=url))
    ids = [str(6900000000000000000 + i) for i in range(5000, 5030)]
    watches._known_among(svc, watch_id, ids)
    started = time.perf_counter()
    for _ in range(200):
        assert len(watches._known_among(svc, watch_id, ids)) == 30
    return (time.perf_counter() - started) / 200 * 1000


def _checkpoint(path: Path) -> None:
    with sqlite3.connect(path) as conn:  # outside SQLAlchemy: a checkpoint cannot run in a transaction
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def sqlite_report():
    empty = fresh_sqlite()
    path = Path(empty.split("///", 1)[1])
    _checkpoint(path)
    before = path.stat().st_size
    watch_id = fill(empty)
    _checkpoint(path)
    after = path.stat().st_size
    with sqlite3.connect(path) as conn:
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master"))  # index -> its table
        per_table: dict = {}
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            table = owner.get(name, name)
            per_table[table] = per_table.get(table, 0) + size
        per_table = {t: per_table.get(t) for t in ("known_accounts", "events", "watches")}
    print(f"SQLite: {KNOWN:,} known accounts + {EVENTS:,} events = {(after - before) / 1024:.0f} KiB for one watch")
    for name, size in per_table.items():
        if size is not None:
            print(f"  {name:15} {size / 1024:8.0f} KiB")
    print(f"  known-account lookup for one page of 30 ids: {lookup_ms(empty, watch_id):.3f} ms")


def postgres_report(url: str):
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)
    watch_id = fill(url)
    engine = make_engine(url)
    with engine.connect() as c:
        sizes = {t: c.execute(text("SELECT pg_total_relation_size(:t)"), {"t": t}).scalar()
                 for t in ("known_accounts", "events", "watches")}
    engine.dispose()
    print(f"PostgreSQL: {sum(sizes.values()) / 1024:.0f} KiB for one watch (tables + indexes)")
    for name, size in sizes.items():
        print(f"  {name:15} {size / 1024:8.0f} KiB")
    print(f"  known-account lookup for one page of 30 ids: {lookup_ms(url, watch_id):.3f} ms")


if __name__ == "__main__":
    sqlite_report()
    if os.environ.get("TEST_DATABASE_URL"):
        postgres_report(os.environ["TEST_DATABASE_URL"])
