"""Issue 14: what one trigger call costs the database, counted (not timed): one
transaction when the journal answers, two through a refresh, reads that do not take SQLite's write lock, and
connection pools sized to the threads that use them. The CPU figures are in
bench/bench_unitcost.py (side by side with the baseline commit)."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.exc import OperationalError

from integration import watches, worker

from integration.config import Settings
from integration.models import CreditDay, Watch
from integration.schedule import Wish
from integration.services import Services
from integration.upstream import Meter
from tests.conftest import AUTH, make_test_app, unique_handle


class Recorder:
    """Every transaction begun and statement run on an engine (SQLAlchemy's events)."""

    def __init__(self, engine):
        self.transactions, self.statements = 0, []
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._statement)

    def _begin(self, _conn):
        self.transactions += 1

    def _statement(self, _conn, _cursor, statement, *_rest):
        self.statements.append(statement)


@pytest.fixture
def env(request, database_url, fake_upstream):
    """(client, services, fake upstream) of an app whose refresh window is an hour, or
    `request.param` seconds (indirect parametrization)."""
    app = make_test_app(database_url, fake_upstream.url, refresh_window_seconds=getattr(request, "param", 3600))
    svc = app.extensions["tiktok_following"]
    yield app.test_client(), svc, fake_upstream
    svc.client.close()
    svc.engine.dispose()


def poll(client, handle: str) -> list[dict]:
    response = client.post("/v1/api/triggers/new-following", json={"handle": handle}, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_a_call_the_journal_answers_is_one_read_transaction(env):
    client, svc, fake = env
    handle = unique_handle()
    fake.seed(handle, 5)
    poll(client, handle)  # the baseline (a refresh: writes)
    recorder = Recorder(svc.engine)
    before = fake.credits_spent()
    assert poll(client, handle) == []
    assert fake.credits_spent() == before  # inside the refresh window: the journal answered
    assert recorder.transactions == 1  # the watch's row and the journal, in one read
    if svc.engine.dialect.name == "sqlite":
        assert "BEGIN IMMEDIATE" not in recorder.statements  # no write lock for a read
        assert recorder.statements.count("BEGIN") == recorder.transactions


def test_a_call_through_a_refresh_is_two_transactions_and_answers_what_it_committed(database_url, fake_upstream):
    app = make_test_app(database_url, fake_upstream.url, refresh_window_seconds=0)
    svc = app.extensions["tiktok_following"]
    client = app.test_client()
    try:
        handle = unique_handle()
        fake_upstream.seed(handle, 5)
        poll(client, handle)  # the baseline
        followed = fake_upstream.follow(handle)
        with svc.reads() as session:
            credits_before = sum(session.scalars(select(CreditDay.credits)))
        recorder = Recorder(svc.engine)
        before = fake_upstream.credits_spent()
        items = poll(client, handle)
        assert fake_upstream.credits_spent() == before + 1
        assert [i["id"] for i in items] == [str(followed["user"]["id"])]
        # The read that takes the lease, and the commit (known ids, journal, credit, answer).
        assert recorder.transactions == 2
        if svc.engine.dialect.name == "postgresql":
            # The read takes the lease (watches._OPEN_TAKE: one statement, not two), and the
            # commit's last statement is the watch's write with the ledger lines, carrying the
            # answer's read (driver_sql.Writes): no statement of their own.
            first, last = recorder.statements[0], recorder.statements[-1]
            assert first.startswith("WITH taken AS \n(UPDATE watches SET lease_token")
            assert "UPDATE watches" in last and "INSERT INTO credit_days" in last and "FROM events JOIN watches" in last
            alone = ("SELECT watches.id, watches.owner_hash, watches.last_used_at", "UPDATE watches",
                     "SELECT watches.handle, events")  # the read, the lease, the answer: before, one each
            assert not any(s.startswith(alone) for s in recorder.statements)
        with svc.reads() as session:
            assert sum(session.scalars(select(CreditDay.credits))) == credits_before + 1
            assert session.scalar(select(Watch.lease_token).where(Watch.handle == handle)) is None
        # The next refresh finds nothing new: the same journal answers (one event, not two).
        assert [i["eventId"] for i in poll(client, handle)] == [items[0]["eventId"]]
    finally:
        svc.client.close()
        svc.engine.dispose()


def test_sqlite_reads_run_beside_a_writer_and_writes_still_take_the_lock(env):
    client, svc, fake = env
    if svc.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    handle = unique_handle()
    fake.seed(handle, 3)
    poll(client, handle)
    recorder = Recorder(svc.engine)
    with svc.engine.connect() as writer:  # another writer holds the lock (BEGIN IMMEDIATE)
        writer.execute(text("UPDATE watches SET truncations = truncations"))
        assert recorder.statements[-2:] == ["BEGIN IMMEDIATE", "UPDATE watches SET truncations = truncations"]
        with svc.reads() as session:  # would wait for the writer if it took the lock too
            assert session.scalar(select(Watch.handle).where(Watch.handle == handle)) == handle
        writer.rollback()


def test_connection_pools_are_sized_to_the_threads(tmp_path):
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    web = Services.build(Settings.from_env(database_url=url, gunicorn_threads=64))
    small_worker = worker.build_services(Settings.from_env(database_url=url, worker_concurrency=8))
    # The worker's threads hold a connection only inside their short transactions: at most 32.
    busy_worker = worker.build_services(Settings.from_env(database_url=url, worker_concurrency=256))
    chosen = Services.build(Settings.from_env(database_url=url, db_pool_size=12), threads=66)
    every = (web, small_worker, busy_worker, chosen)
    try:
        assert [s.engine.pool.size() for s in every] == [64, 18, 32, 12]
        # An upstream connection per calling thread: no pool to size any more (the client keeps a
        # handle per thread): tests/test_action_overhead.py::test_the_upstream_client_keeps_a_connection_alive_per_calling_thread.
    finally:
        for svc in every:
            svc.client.close()
            svc.engine.dispose()


def test_a_read_that_cannot_take_sqlites_write_lock_falls_back_to_a_write_transaction(database_url, fake_upstream,
                                                                                         monkeypatch):
    """SQLite: the read that finds the watch stale takes its lease by turning into a write;
    if another writer committed since the read began, SQLite refuses (its snapshot is out
    of date) and the call takes the lease in a transaction of its own instead."""
    app = make_test_app(database_url, fake_upstream.url, refresh_window_seconds=0)
    svc = app.extensions["tiktok_following"]
    if svc.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write lock")
    client = app.test_client()
    try:
        handle = unique_handle()
        fake_upstream.seed(handle, 3)
        poll(client, handle)
        followed = fake_upstream.follow(handle)
        take, refused = watches._take, []

        def another_writer_first(svc_, session, *args):
            with svc.engine.begin() as other:  # commits after our read's snapshot
                other.execute(text("UPDATE watches SET truncations = truncations + 1"))
            try:
                return take(svc_, session, *args)
            except OperationalError:
                refused.append(True)
                raise

        monkeypatch.setattr(watches, "_take", another_writer_first)
        items = poll(client, handle)
        assert refused  # SQLite refused the read's write, as it does under concurrent writers
        assert [i["id"] for i in items] == [str(followed["user"]["id"])]
    finally:
        svc.client.close()
        svc.engine.dispose()


@pytest.mark.parametrize("env", [60], indirect=True)
@pytest.mark.parametrize("case", ["stale", "lease expired", "leased", "fresh", "touch due", "check every", "wish"])
def test_the_read_takes_the_lease_only_when_the_call_would_take_it_next(env, case):
    """PostgreSQL: the trigger call's read takes a stale watch's lease itself (one statement,
    not two) when nothing else must happen first. The lease rules are _take's: not while
    another caller's lease runs (an expired one is taken over), not once the watch is fresh.
    A watch to touch, one with a checkEvery interval, and a call that asks something of the
    watch are read only, and go the way they went before. SQLite: always read only."""
    client, svc, fake = env
    handle = unique_handle()
    fake.seed(handle, 3)
    poll(client, handle)
    now = svc.clock()
    values = {"last_refresh_at": now - dt.timedelta(seconds=61), "last_used_at": now}
    if case == "lease expired":
        values.update(lease_token="crashed", lease_until=now - dt.timedelta(seconds=1))
    if case == "leased":
        values.update(lease_token="other", lease_until=now + dt.timedelta(seconds=30))
    if case == "fresh":
        values["last_refresh_at"] = now - dt.timedelta(seconds=59)
    if case == "touch due":
        values["last_used_at"] = now - watches.TOUCH_EVERY - dt.timedelta(seconds=1)
    if case == "check every":
        values["check_every_minutes"] = 1
    with svc.sessions.begin() as session:
        session.execute(update(Watch).where(Watch.handle == handle).values(**values))
        owner = session.scalar(select(Watch.owner_hash).where(Watch.handle == handle))
    wish = Wish(budget=10) if case == "wish" else Wish()
    expect_taken = case in ("stale", "lease expired") and svc.engine.dialect.name == "postgresql"

    with svc.reads() as session:
        row, lease = watches._open_or_take(svc, session.connection(), owner, handle, now, wish, Meter(), {})
    assert row.id and row.last_refresh_at == values["last_refresh_at"]  # the row as the call read it
    assert (lease is not None) == expect_taken
    with svc.reads() as session:
        token = session.scalar(select(Watch.lease_token).where(Watch.handle == handle))
    assert token == (lease.token if expect_taken else values.get("lease_token"))
    if expect_taken:
        assert lease.claimed.handle == handle and lease.reserved == 0
        # A second caller, at once: the lease is held, not taken again.
        with svc.reads() as session:
            _, again = watches._open_or_take(svc, session.connection(), owner, handle, now, wish, Meter(), {})
        assert again is None
