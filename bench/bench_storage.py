"""Storage per watch, today's layout next to the packed one, on SQLite (and on PostgreSQL
when TEST_DATABASE_URL is set), in one run:

1. a database at migration 0007 (a row per known account; top_ids and the baseline page as
   JSON) is filled with 2,000 typical watches (30 known, a baseline page of 30, 30 top_ids)
   and one large watch (10,000 known, 300 top_ids, 1,000 journal events), with realistic
   ids (64-bit, creation time in the high 32 bits) and realistic avatar URLs; measured;
2. migration 0008 converts it (timed); vacuumed; measured again; then the large watch's
   top_ids are cut to today's cap, as its next refresh does, and measured.

Also: the lookup a refresh does for a page of 30 ids among the large watch's 10,000, and
the codec choice (delta-varint against fixed 8 bytes) on realistic ids. Bytes are exact and
not load-sensitive; timings are indicative.

    .venv/bin/python bench/bench_storage.py
"""
from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
import tempfile
import time
from array import array
from bisect import bisect_left
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import bindparam, text

from harness import ROOT
from fakeupstream import make_account
from integration import idset, known
from integration.detection import TOP_IDS_CAP
from integration.accounts import flatten
from integration.db import make_engine, make_session_factory

TYPICAL, KNOWN, EVENTS = 2_000, 10_000, 1_000
TOP_CAP = 300  # detection.TOP_IDS_CAP when 0007 was today
OLD = {"known": ["known_accounts"], "watches": ["watches"], "events": ["events"]}
NEW = {"known": ["known_segments", "known_text_ids"], "watches": ["watches"], "events": ["events"]}
rng = random.Random(14)


def tiktok_id() -> int:
    """Accounts created 2016-2026: creation second in the high 32 bits, the rest random."""
    return (rng.randint(1_450_000_000, 1_790_000_000) << 32) | rng.getrandbits(32)


def account(n: int) -> dict:
    flat = flatten(make_account(n))
    flat["id"] = str(tiktok_id())
    flat["avatarThumb"] = (f"https://p16-sign-va.tiktokcdn.com/tos-maliva-avt-0068/{rng.getrandbits(128):032x}"
                           f"~c5_100x100.jpeg?lk3s=a5d48078&nonce={rng.getrandbits(20)}&refresh_token="
                           f"{rng.getrandbits(128):032x}&x-expires=1764000000&x-signature="
                           f"{base64.b64encode(rng.randbytes(20)).decode()}&shp=a5d48078&shcp=81f88b70")
    flat["secUid"] = "MS4wLjABAAAA" + base64.urlsafe_b64encode(rng.randbytes(48)).decode()
    return flat


def _config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = url
    return cfg


def fill_0007(url: str) -> list[str]:
    """Today's rows, written as the 0007 code wrote them; returns the large watch's ids."""
    engine = make_engine(url)
    now = "2026-11-26 12:00:00"
    insert_watch = text(
        "INSERT INTO watches (id, owner_hash, handle, created_at, watermark, top_ids, watermark_exclusive,"
        " baseline, last_sequence, status, truncations, last_used_at, check_auto, api_key_enc, next_poll_at)"
        " VALUES (:id, :owner, :handle, :now, 1790000000, :top, :t, :baseline, :seq, 'active', 0, :now, :f, :key, :now)")
    insert_known = text("INSERT INTO known_accounts (watch_id, account_id) VALUES (:w, :a)")
    with engine.begin() as conn:
        for watch_id in range(1, TYPICAL + 2):
            large = watch_id == TYPICAL + 1
            page = [account(i) for i in range(30)]
            ids = [a["id"] for a in page] + [str(tiktok_id()) for _ in range(KNOWN - 30 if large else 0)]
            conn.execute(insert_watch, {
                "id": watch_id, "owner": f"{rng.getrandbits(256):064x}", "handle": f"creator.{watch_id}",
                "now": now, "top": json.dumps(ids[:TOP_CAP if large else 30]), "t": True,
                "baseline": json.dumps(page), "seq": EVENTS if large else 0, "f": False,
                "key": base64.urlsafe_b64encode(rng.randbytes(105)).decode()})
            conn.execute(insert_known, [{"w": watch_id, "a": a} for a in ids])
        conn.execute(text("INSERT INTO events (watch_id, sequence, account_id, detected_at, payload, event)"
                          " VALUES (:w, :s, :a, :now, :p, 'new_following')"),
                     [{"w": TYPICAL + 1, "s": s + 1, "a": ids[s], "now": now, "p": json.dumps(account(s))}
                      for s in range(EVENTS)])
    engine.dispose()
    return ids


def _sqlite_sizes(url: str) -> dict[str, int]:
    path = Path(url.split("///", 1)[1])
    with sqlite3.connect(path) as conn:  # outside SQLAlchemy: neither runs in a transaction
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        owner = dict(conn.execute("SELECT name, tbl_name FROM sqlite_master"))  # index -> its table
        sizes: dict[str, int] = {}
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            sizes[owner.get(name, name)] = sizes.get(owner.get(name, name), 0) + size
    return sizes


def _pg_sizes(url: str, tables: list[str]) -> dict[str, int]:
    engine = make_engine(url).execution_options(isolation_level="AUTOCOMMIT")  # VACUUM outside a transaction
    with engine.connect() as conn:
        for table in tables:
            conn.execute(text(f"VACUUM FULL {table}"))
        sizes = {t: conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": t}).scalar() for t in tables}
    engine.dispose()
    return sizes


def _top_ids_bytes(url: str) -> tuple[int, float]:
    """(the large watch's top_ids, the typical watch's on average), bytes."""
    engine = make_engine(url)
    size = "pg_column_size(top_ids)" if url.startswith("postgresql") else "length(CAST(top_ids AS BLOB))"
    with engine.connect() as conn:
        large = conn.execute(text(f"SELECT {size} FROM watches WHERE id = :id"), {"id": TYPICAL + 1}).scalar()
        typical = conn.execute(text(f"SELECT AVG({size}) FROM watches WHERE id <= :n"), {"n": TYPICAL}).scalar()
    engine.dispose()
    return large, float(typical)


def _cap_top_ids(url: str, ids: list[str]) -> None:
    """What the large watch's next refresh writes: its top_ids cut to detection.TOP_IDS_CAP."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE watches SET top_ids = :top WHERE id = :id"),
                     {"top": idset.pack_list(ids[:TOP_IDS_CAP]), "id": TYPICAL + 1})
    engine.dispose()


def _lookup_ms(url: str, lookup) -> float:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    lookup(sessions)
    started = time.perf_counter()
    for _ in range(200):
        lookup(sessions)
    engine.dispose()
    return (time.perf_counter() - started) / 200 * 1000


def measure(url: str) -> dict[str, tuple]:
    """{figure: (today, packed)} for one database."""
    cfg = _config(url)
    command.upgrade(cfg, "0007_watchlists")
    big = fill_0007(url)
    page = big[5000:5030]
    postgres = url.startswith("postgresql")
    tables = sorted({t for layout in (OLD, NEW) for names in layout.values() for t in names})

    def sizes(layout) -> dict[str, int]:
        existing = [t for t in tables if t in sum(layout.values(), [])]
        raw = _pg_sizes(url, existing) if postgres else _sqlite_sizes(url)
        return {kind: sum(raw.get(t, 0) for t in names) for kind, names in layout.items()}

    def old_lookup(sessions):
        with sessions() as s:
            # today's statement (watches._known_among at 0007), as Core: no ORM cost counted against it
            found = s.execute(text("SELECT account_id FROM known_accounts WHERE watch_id = :w AND account_id IN :ids")
                              .bindparams(bindparam("ids", expanding=True)), {"w": TYPICAL + 1, "ids": page}).all()
        assert len(found) == 30

    def new_lookup(sessions):
        with sessions() as s:
            assert len(known.known_of(s, TYPICAL + 1, page)) == 30

    before, top_before, lookup_before = sizes(OLD), _top_ids_bytes(url), _lookup_ms(url, old_lookup)
    started = time.perf_counter()
    command.upgrade(cfg, "head")
    migrated = time.perf_counter() - started
    after, lookup_after = sizes(NEW), _lookup_ms(url, new_lookup)
    _cap_top_ids(url, big)
    top_after = _top_ids_bytes(url)
    ids, watches = TYPICAL * 30 + KNOWN, TYPICAL + 1
    row_before, row_after = before["watches"] / watches, after["watches"] / watches
    return {
        "known ids, bytes per id": (before["known"] / ids, after["known"] / ids),
        "watch row, bytes per watch": (row_before, row_after),
        # The typical row with its 30 top_ids swapped for a full list (the rest of the row is alike).
        "watch row at the top_ids cap, bytes": (row_before - top_before[1] + top_before[0],
                                                row_after - top_after[1] + top_after[0]),
        f"top_ids at the cap ({TOP_CAP} -> {TOP_IDS_CAP} ids), bytes": (top_before[0], top_after[0]),
        f"journal, bytes per event (not changed)": (before["events"] / EVENTS, after["events"] / EVENTS),
        "known lookup, 30 ids among 10,000, ms": (lookup_before, lookup_after),
        f"migration 0008 of {watches:,} watches, s": (None, migrated),
    }


def codec_choice() -> None:
    """The design's delta-varint against the fixed 8 bytes kept (integration/idset.py)."""
    def varint(values):
        out, prev = bytearray(), 0
        for v in values:
            d, prev = v - prev, v
            while d >= 0x80:
                out.append((d & 0x7F) | 0x80)
                d >>= 7
            out.append(d)
        return bytes(out)

    def unvarint(blob):
        values, prev, cur, shift = [], 0, 0, 0
        for byte in blob:
            cur |= (byte & 0x7F) << shift
            if byte & 0x80:
                shift += 7
            else:
                prev += cur
                values.append(prev)
                cur = shift = 0
        return values

    print("codec, realistic ids          | varint B/id  decode all (ms) | fixed B/id  30 lookups (ms)")
    for n in (1_000, 10_000):
        values = sorted({tiktok_id() for _ in range(n)})
        packed, fixed = varint(values), array("Q", values).tobytes()
        probes = values[:: n // 30][:30]
        started = time.perf_counter()
        for _ in range(20):
            members = set(unvarint(packed))
            assert all(p in members for p in probes)
        decode = (time.perf_counter() - started) / 20 * 1000
        started = time.perf_counter()
        for _ in range(200):
            view = memoryview(fixed).cast("Q")
            assert all(view[bisect_left(view, p)] == p for p in probes)
        search = (time.perf_counter() - started) / 200 * 1000
        print(f"  {n:>6,} ids                  | {len(packed) / n:10.2f}  {decode:15.3f} | {8:10.2f}  {search:15.3f}")


def main() -> None:
    folder = tempfile.mkdtemp(prefix="bench-storage-")
    results = {"SQLite": measure(f"sqlite:///{folder}/storage.db")}
    if os.environ.get("TEST_DATABASE_URL"):
        url = os.environ["TEST_DATABASE_URL"]
        engine = make_engine(url)
        with engine.begin() as c:
            c.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
        results["PostgreSQL"] = measure(url)
    print(f"storage: {TYPICAL:,} typical watches + 1 large ({KNOWN:,} known, {TOP_CAP} top_ids, {EVENTS:,} events)")
    head = "".join(f"| {name + ' today':>16} {name + ' packed':>17} " for name in results)
    print(f"{'':44}{head}")
    for figure in next(iter(results.values())):
        cells = "".join(f"| {_fmt(results[db][figure][0]):>16} {_fmt(results[db][figure][1]):>17} " for db in results)
        print(f"{figure:44}{cells}")
    codec_choice()


def _fmt(value) -> str:
    return "-" if value is None else f"{value:,.1f}" if value >= 10 else f"{value:.3f}"


if __name__ == "__main__":
    main()
