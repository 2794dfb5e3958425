"""Migration 0006_unfollows keeps the journal and the outbox: on SQLite, dropping the unique
(watch, account) copies `events`, which would cascade-delete pending deliveries."""
from __future__ import annotations

import datetime as dt

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from integration.config import ROOT
from integration.db import make_engine


def _config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = url
    return cfg


def test_upgrade_keeps_events_and_pending_deliveries_and_allows_a_second_event_per_account(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    cfg = _config(url)
    command.upgrade(cfg, "0005_cost_controls")
    now = dt.datetime(2026, 11, 26, 12, 0)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO watches (id, owner_hash, handle, created_at, top_ids, baseline, last_sequence, status,"
            " truncations, watermark_exclusive) VALUES (1, 'o', 'h', :now, '[]', '[]', 1, 'active', 0, 1)"), {"now": now})
        conn.execute(text(
            "INSERT INTO subscriptions (id, watch_id, owner_hash, platform, target_url, secret_enc, created_at, event,"
            " target_hash) VALUES ('sub_1', 1, 'o', 'make', 'https://x.test/h', 's', :now, 'new_following', 't')"),
            {"now": now})
        conn.execute(text("INSERT INTO events (id, watch_id, sequence, account_id, detected_at, payload)"
                          " VALUES (7, 1, 1, 'a1', :now, '{}')"), {"now": now})
        conn.execute(text("INSERT INTO deliveries (id, subscription_id, event_id, status, attempts, next_attempt_at,"
                          " created_at) VALUES ('d1', 'sub_1', 7, 'pending', 0, :now, :now)"), {"now": now})
    engine.dispose()

    command.upgrade(cfg, "head")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT id, status FROM deliveries")).all() == [("d1", "pending")]
            assert conn.execute(text("SELECT id, event FROM events")).all() == [(7, "new_following")]
            # Unfollowed, then followed again: one account, several events.
            conn.execute(text("INSERT INTO events (watch_id, sequence, account_id, detected_at, payload, event)"
                              " VALUES (1, 2, 'a1', :now, '{}', 'unfollowed')"), {"now": now})
            conn.execute(text("INSERT INTO events (watch_id, sequence, account_id, detected_at, payload)"
                              " VALUES (1, 3, 'a1', :now, '{}')"), {"now": now})
            assert conn.execute(text("PRAGMA foreign_key_check")).all() == []
    finally:
        engine.dispose()

    command.downgrade(cfg, "0005_cost_controls")  # unfollows go; the newest new follow of each account stays
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT sequence FROM events")).all() == [(3,)]
    finally:
        engine.dispose()
