"""integration/driver_sql.py: a hot statement run on the driver's cursor reads and writes the
values SQLAlchemy's own execution does, raises what it would raise, is seen by the engine's
statement listeners, and a lost connection is dropped as SQLAlchemy drops it."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, event, insert, select, text
from sqlalchemy.exc import IntegrityError, NoResultFound

from integration import driver_sql, watches
from integration.db import make_engine
from integration.driver_sql import Prepared, Writes
from integration.models import CreditDay, Watch
from tests.conftest import AUTH, make_test_app, unique_handle

_W = Watch.__table__
MOMENT = dt.datetime(2026, 11, 27, 4, 5, 6, 789012)
# Columns of every kind a hot statement reads: text, integers, a time, a flag, bytes, and NULLs.
_READ = select(_W.c.id, _W.c.handle, _W.c.last_used_at, _W.c.watermark_exclusive, _W.c.top_ids, _W.c.watermark,
               _W.c.daily_budget).where(_W.c.owner_hash == bindparam("owner")).order_by(_W.c.id)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url, 2)
    yield engine
    engine.dispose()


def _add(conn, handle: str, **values) -> int:
    return conn.execute(insert(Watch).values(owner_hash="o", handle=handle, check_auto=False, **values)
                        .returning(Watch.id)).scalar_one()


def test_rows_read_and_written_are_sqlalchemys(engine):
    with engine.begin() as conn:
        _add(conn, "a", last_used_at=MOMENT, watermark_exclusive=True, top_ids=b"\x00\xff", watermark=2 ** 62)
        _add(conn, "b", last_used_at=MOMENT.replace(microsecond=0), watermark_exclusive=False)
        expected = [tuple(row) for row in conn.execute(_READ, {"owner": "o"})]
        got = Prepared(_READ).rows(conn, {"owner": "o"})
    assert [tuple(row) for row in got] == expected
    assert got[0].last_used_at == MOMENT and got[0].watermark_exclusive is True and got[0].top_ids == b"\x00\xff"
    assert got[1].daily_budget is None and got[1].watermark_exclusive is False

    # A time written by a Prepared statement compares and reads back as SQLAlchemy's would
    # (SQLite stores times as text: one format, or `<` between them is wrong).
    later = MOMENT.replace(microsecond=0) + dt.timedelta(seconds=1)
    take = Prepared(_W.update().where(_W.c.handle == bindparam("h"), _W.c.last_used_at < bindparam("before"))
                    .values(lease_until=bindparam("until")).returning(_W.c.id, _W.c.lease_until))
    with engine.begin() as conn:
        assert take.first(conn, {"h": "b", "before": later, "until": later}).lease_until == later
        assert take.first(conn, {"h": "a", "before": MOMENT, "until": later}) is None  # not strictly before
        assert conn.execute(select(_W.c.lease_until).where(_W.c.handle == "b")).scalar_one() == later
        assert conn.execute(select(_W.c.handle).where(_W.c.lease_until == later)).scalars().all() == ["b"]


def test_errors_are_sqlalchemys_and_the_transaction_rolls_back(engine):
    line = Prepared(insert(CreditDay).values(owner_hash=bindparam("o"), day=bindparam("d"), credits=1, reserved=0,
                                             refreshes=0))
    with engine.begin() as conn:
        line.run(conn, {"o": "o", "d": MOMENT.date()})
    with pytest.raises(IntegrityError):  # (owner, day) is the key
        with engine.begin() as conn:
            line.run(conn, {"o": "p", "d": MOMENT.date()})
            line.run(conn, {"o": "o", "d": MOMENT.date()})
    with engine.connect() as conn:
        assert conn.execute(select(CreditDay.owner_hash, CreditDay.day, CreditDay.credits)).all() == [
            ("o", MOMENT.date(), 1)]
        with pytest.raises(NoResultFound):
            Prepared(_READ).one(conn, {"owner": "nobody"})


def test_a_statement_that_needs_python_side_defaults_is_refused(engine):
    """Watch.created_at's default is computed by SQLAlchemy at each execution, which a
    Prepared statement skips: it must say so, not insert a NULL."""
    incomplete = Prepared(insert(Watch).values(owner_hash=bindparam("o"), handle=bindparam("h"), check_auto=False))
    with engine.begin() as conn:
        with pytest.raises(TypeError, match="Python default"):
            incomplete.run(conn, {"o": "o", "h": "x"})


def test_a_statement_on_a_connection_not_begun_belongs_to_the_transaction_commit_commits(engine):
    """As SQLAlchemy's `execute` does (autobegin). On PostgreSQL the driver would otherwise run
    the write in a transaction of its own, which `commit()` does not see and the pool's reset
    rolls back."""
    line = Prepared(insert(CreditDay).values(owner_hash=bindparam("o"), day=bindparam("d"), credits=1, reserved=0,
                                             refreshes=0))
    with engine.connect() as conn:
        line.run(conn, {"o": "kept", "d": MOMENT.date()})
        conn.commit()
        line.run(conn, {"o": "dropped", "d": MOMENT.date()})
        conn.rollback()
    with engine.connect() as conn:
        assert conn.execute(select(CreditDay.owner_hash)).scalars().all() == ["kept"]


def _statements_of(engine) -> list[str]:
    """The SQL of every statement `engine` sends from now on (the listeners driver_sql tells)."""
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_rest: seen.append(statement))
    return seen


def test_the_engines_statement_listeners_see_each_statement(engine):
    seen = _statements_of(engine)
    with engine.begin() as conn:
        Prepared(_READ).rows(conn, {"owner": "o"})
    assert seen[-1].startswith("SELECT watches.id, watches.handle")


def test_a_connection_the_server_dropped_fails_one_call_and_the_next_opens_afresh(database_url, fake_upstream):
    """PostgreSQL restarted (here: the sessions of the app's pool terminated). The first
    statement on a dead connection answers 503 storage_unavailable; the pool drops its dead
    connections, so the next call gets a fresh one and succeeds."""
    if not database_url.startswith("postgresql"):
        pytest.skip("a server that drops connections")
    app = make_test_app(database_url, fake_upstream.url, refresh_window_seconds=3600)
    svc = app.extensions["tiktok_following"]
    client = app.test_client()
    handle = unique_handle()
    fake_upstream.seed(handle, 3)

    def poll():
        return client.post("/v1/api/triggers/new-following", json={"handle": handle}, headers=AUTH)
    try:
        assert poll().status_code == 200
        # Three idle connections in the app's pool (checked out together: each its own session).
        held = [svc.engine.connect() for _ in range(max(3, svc.engine.pool.checkedin()))]
        pids = [conn.execute(text("SELECT pg_backend_pid()")).scalar() for conn in held]
        for conn in held:
            conn.close()
        killer = make_engine(database_url, 1)
        with killer.connect() as conn:
            for pid in pids:
                assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        killer.dispose()
        dropped = poll()
        assert dropped.status_code == 503 and dropped.get_json()["code"] == "storage_unavailable"
        assert [poll().status_code for _ in range(3)] == [200, 200, 200]
    finally:
        svc.client.close()
        svc.engine.dispose()


# Writes and a read for the Writes tests: a day line added, one bumped, the day's lines.
_ADD = Prepared(insert(CreditDay).values(owner_hash=bindparam("o"), day=bindparam("d"), credits=bindparam("c"),
                                         reserved=0, refreshes=0))
_BUMP = Prepared(CreditDay.__table__.update().where(CreditDay.owner_hash == bindparam("b_o"))
                 .values(credits=CreditDay.credits + 1))
_DAY_READ = Prepared(select(CreditDay.owner_hash, CreditDay.credits).where(CreditDay.day == bindparam("day"))
                     .order_by(CreditDay.owner_hash))


def test_writes_riding_with_a_read_are_written_once_and_the_read_sees_the_rows_before_them(engine):
    """driver_sql.Writes: on PostgreSQL one statement (the writes as data-modifying WITHs of
    the read); on SQLite the read, then the writes. Either way the read answers as it would
    have before them, both commit (or roll back) with the transaction, and `run` afterwards
    does not write them twice."""
    add, bump, read = _ADD, _BUMP, _DAY_READ
    seen = _statements_of(engine)
    with engine.begin() as conn:
        add.run(conn, {"o": "a", "d": MOMENT.date(), "c": 1})
        writes = Writes([(add, {"o": "b", "d": MOMENT.date(), "c": 5}), (bump, {"b_o": "a"})])
        before = len(seen)
        rows = read.rows(conn, {"day": MOMENT.date()}, writes)
        writes.run(conn)  # carried already: nothing more
        assert len(seen) - before == (1 if engine.dialect.name == "postgresql" else 3)
    assert [tuple(row) for row in rows] == [("a", 1)]
    with engine.connect() as conn:
        assert read.rows(conn, {"day": MOMENT.date()}) == [("a", 2), ("b", 5)]
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:  # a riding write that fails undoes the transaction
            read.rows(conn, {"day": MOMENT.date()}, Writes([(bump, {"b_o": "b"}),
                                                            (add, {"o": "a", "d": MOMENT.date(), "c": 1})]))
    with engine.connect() as conn:
        assert read.rows(conn, {"day": MOMENT.date()}) == [("a", 2), ("b", 5)]


def test_writes_no_read_carried_are_one_statement_on_postgresql_and_in_order_elsewhere(engine):
    """`Writes.run` (the commit's last word when no read carries them, e.g. the worker's): on
    PostgreSQL the last write carries the others as data-modifying WITHs (one statement), on
    SQLite each runs in order; written once, with the transaction."""
    add, bump, read = _ADD, _BUMP, _DAY_READ
    seen = _statements_of(engine)
    with engine.begin() as conn:
        add.run(conn, {"o": "a", "d": MOMENT.date(), "c": 1})
        writes = Writes([(bump, {"b_o": "a"}), (add, {"o": "b", "d": MOMENT.date(), "c": 5})])
        before = len(seen)
        writes.run(conn)
        writes.run(conn)  # once only
        sent = seen[before:]
    if engine.dialect.name == "postgresql":
        assert len(sent) == 1 and sent[0].startswith("WITH riding_0 AS") and "INSERT INTO credit_days" in sent[0]
    else:
        assert [s.split(" ")[0] for s in sent] == ["UPDATE", "INSERT"]
    with engine.connect() as conn:
        assert read.rows(conn, {"day": MOMENT.date()}) == [("a", 2), ("b", 5)]


def test_writes_whose_parameter_names_clash_with_the_reads_are_refused(engine):
    """One namespace for the parameters of a read and its riding writes (PostgreSQL): a name
    in both would silently bind one value to both."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs them as separate statements")
    bump = Prepared(CreditDay.__table__.update().where(CreditDay.owner_hash == bindparam("owner"))
                    .values(credits=CreditDay.credits + 1))
    with engine.begin() as conn:
        with pytest.raises(TypeError, match="owner"):
            Prepared(_READ).rows(conn, {"owner": "o"}, Writes([(bump, {"owner": "o"})]))


def test_a_connection_replaced_after_it_was_invalidated_gets_a_cursor_of_its_own(engine):
    """`execute` keeps one driver cursor per connection (the pool's `info`): a connection the
    pool replaced (here invalidated by hand, as a lost one is) must not reuse the old one's."""
    with engine.connect() as conn:
        assert Prepared(_READ).rows(conn, {"owner": "o"}) == []
        old = conn.connection.info[driver_sql._CURSOR]
        conn.invalidate()
        conn.rollback()  # what a failed request's transaction does
        assert Prepared(_READ).rows(conn, {"owner": "o"}) == []  # on the new connection
        assert conn.connection.info[driver_sql._CURSOR] is not old
