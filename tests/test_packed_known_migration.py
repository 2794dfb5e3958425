"""Migration 0009_packed_known converts watches of a 0007 database (known_accounts rows,
top_ids and baseline as JSON) without losing or re-announcing anything: after the upgrade
the next refresh announces exactly the new follows, the journal continues, and the
downgrade gives the rows back. On SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import select, text

from integration import idset, known
from integration.accounts import flatten
from integration.config import ROOT
from integration.db import make_engine
from integration.items import BASELINE_SAMPLES, unpack_samples
from integration.migrate import upgrade
from integration.models import Watch
from integration.security import key_hash
from tests.conftest import API_KEY, AUTH, PG_URL, make_test_app

SECRET = "s" * 40
ODD = ["legacy-id", "007", str(2**64)]  # known ids the packed form cannot hold as numbers


def _recreate_pg(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"] if PG_URL else ["sqlite"])
def old_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    _recreate_pg(PG_URL)
    yield PG_URL
    _recreate_pg(PG_URL)  # the other tests' schema back
    upgrade(PG_URL)


def _config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = url
    return cfg


def _old_watch(conn, watch_id: int, handle: str, following: list, known_ids: list[str], journal: int) -> None:
    """A watch as the 0007 code left it after its baseline and `journal` new follows."""
    now = dt.datetime(2026, 11, 26, 12, 0)
    page = [flatten(entry) for _, entry in following[:30]]
    conn.execute(text(
        "INSERT INTO watches (id, owner_hash, handle, created_at, watermark, top_ids, watermark_exclusive, baseline,"
        " last_sequence, status, truncations, last_used_at, check_auto) VALUES (:id, :owner, :handle, :now, :w,"
        " :top, :excl, :baseline, :seq, 'active', 0, :now, :f)"),
        {"id": watch_id, "owner": key_hash(SECRET, API_KEY), "handle": handle, "now": now,
         "w": following[0][0] if following else None, "top": json.dumps([a["id"] for a in page]),
         "excl": True, "baseline": json.dumps(page), "seq": journal, "f": False})
    if known_ids:
        conn.execute(text("INSERT INTO known_accounts (watch_id, account_id) VALUES (:w, :a)"),
                     [{"w": watch_id, "a": a} for a in known_ids])
    for sequence, account in enumerate(reversed(page[:journal]), start=1):
        conn.execute(text("INSERT INTO events (watch_id, sequence, account_id, detected_at, payload, event)"
                          " VALUES (:w, :s, :a, :now, :p, 'new_following')"),
                     {"w": watch_id, "s": sequence, "a": account["id"], "now": now, "p": json.dumps(account)})


def test_upgrade_converts_watches_and_the_next_refresh_announces_exactly_the_new_follows(old_url, fake_upstream):
    cfg = _config(old_url)
    command.upgrade(cfg, "0007_watchlists")
    big = fake_upstream.seed("bigwatch", 1200)  # more known ids than one segment holds
    fake_upstream.seed("emptywatch", 0)
    big_known = [e["user"]["id"] for e in big] + ODD
    engine = make_engine(old_url)
    with engine.begin() as conn:
        _old_watch(conn, 1, "bigwatch", fake_upstream.following("bigwatch"), big_known, journal=2)
        _old_watch(conn, 2, "emptywatch", [], [], journal=0)
        _old_watch(conn, 3, "oddwatch", [], ODD, journal=0)
    engine.dispose()

    command.upgrade(cfg, "head")
    app = make_test_app(old_url, fake_upstream.url, secret_key=SECRET)
    svc = app.extensions["tiktok_following"]
    try:
        with svc.sessions() as session:
            assert known.all_of(session, 1) == set(big_known)
            assert known.all_of(session, 2) == set() and known.all_of(session, 3) == set(ODD)
            watch = session.get(Watch, 1)
            assert idset.unpack_list(watch.top_ids) == tuple(e["user"]["id"] for e in big[:30])
            assert unpack_samples(watch.samples) == [flatten(e) for e in big[:BASELINE_SAMPLES]]
            assert session.get(Watch, 2).top_ids is None and session.get(Watch, 2).samples is None

        # New follows, and a deep known account followed again (known: not news).
        new = [fake_upstream.follow("bigwatch") for _ in range(3)]
        fake_upstream.follow("bigwatch", account=big[700])
        answer = app.test_client().post("/v1/make/triggers/new-following", json={"handle": "bigwatch"}, headers=AUTH)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        items = answer.get_json()
        assert [i["id"] for i in items] == [e["user"]["id"] for e in reversed(new)] + [e["user"]["id"] for e in big[:2]]
        assert [i["sequence"] for i in items] == [5, 4, 3, 2, 1]  # the journal continues
        with svc.sessions() as session:
            assert known.all_of(session, 1) == set(big_known) | {e["user"]["id"] for e in new}
    finally:
        svc.engine.dispose()

    command.downgrade(cfg, "0007_watchlists")
    engine = make_engine(old_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT account_id FROM known_accounts WHERE watch_id = 1")).scalars().all()
            assert sorted(rows) == sorted(set(big_known) | {e["user"]["id"] for e in new})
            top, baseline = conn.execute(text("SELECT top_ids, baseline FROM watches WHERE id = 1")).one()
            assert json.loads(top)[:4] == [big[700]["user"]["id"], *(e["user"]["id"] for e in reversed(new))]
            assert [a["id"] for a in json.loads(baseline)] == [e["user"]["id"] for e in big[:BASELINE_SAMPLES]]
    finally:
        engine.dispose()
    command.upgrade(cfg, "head")  # and up again: nothing lost on the way
    engine = make_engine(old_url)
    try:
        with engine.connect() as conn:
            from sqlalchemy.orm import Session
            assert known.all_of(Session(conn), 1) == set(big_known) | {e["user"]["id"] for e in new}
    finally:
        engine.dispose()
