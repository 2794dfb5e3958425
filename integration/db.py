"""Engine and sessions. SQLite (WAL) on one machine, PostgreSQL beyond."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import sessionmaker

from integration import driver_sql


OVERFLOW = 8  # connections beyond the pool (watchlist threads, the lease keeper); closed when returned


def make_engine(url: str, pool_size: int = 10) -> Engine:
    """`pool_size`: the threads of the process that use the database at once, so no thread
    waits for a connection and none is opened and closed per use (overflow churn)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:" and not path.startswith("file:"):  # file:...?mode=ro: opened as given
            _create_private(Path(path.split("?", 1)[0]))
        on_disk = bool(path) and path != ":memory:"  # in memory: one connection per thread (SingletonThreadPool)
        pool = {"pool_size": pool_size, "max_overflow": OVERFLOW} if on_disk else {}
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **pool)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")   # readers never block the writer
            cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL, far fewer fsyncs
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):
            # Take the write lock at BEGIN so two writers never deadlock upgrading a read lock.
            # Sessions of `make_read_session_factory` only read: a plain BEGIN (a WAL snapshot)
            # lets them run beside the writer instead of queueing for its lock. On the driver's
            # cursor: SQLAlchemy's execution path cost more than the BEGIN (integration/driver_sql.py).
            driver_sql.execute(conn, "BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

        # pysqlite's own transaction handling must be off for the BEGIN above to be ours.
        @event.listens_for(engine, "connect")
        def _no_autobegin(dbapi_conn, _record):
            dbapi_conn.isolation_level = None

        return engine
    # No pre-ping: it was a round trip on every checkout (two per trigger call). A connection a
    # server restart killed fails its statement once (a 503, "try again"), and SQLAlchemy then
    # replaces every older connection of the pool (pool invalidation on a disconnect error).
    return create_engine(url, pool_size=pool_size, max_overflow=OVERFLOW)


def _create_private(path: Path) -> None:
    """The database holds encrypted keys and owner hashes: readable by this user only.

    The folder is 0700 and the file 0600 from the start (SQLite creates its -wal and -shm
    files with the database file's mode), whatever the umask.
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(path, 0o600)


def make_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)


READ_ONLY = "tiktok_read_only"  # an execution option of the engine the read sessions use


def make_read_session_factory(engine: Engine) -> sessionmaker:
    """Sessions that only read (never flush), on the same pool as `make_session_factory`'s.
    SQLite: a plain BEGIN, not the write lock. PostgreSQL: autocommit, so a read costs no
    BEGIN and no ROLLBACK round trip (each statement sees committed rows, as READ COMMITTED does)."""
    options = {READ_ONLY: True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT"
    return sessionmaker(engine.execution_options(**options), expire_on_commit=False, autoflush=False)


@contextmanager
def transaction(factory: sessionmaker):
    with factory() as session, session.begin():
        yield session


@contextmanager
def core_transaction(factory: sessionmaker):
    """`transaction` on a Core connection of the factory's engine, no ORM session: for a short
    write whose statements cost less than a session's setup and teardown (a refresh's commit,
    a credit). Same BEGIN (IMMEDIATE on SQLite), and SQLAlchemy's events still see it. A
    session for ORM work inside it: `factory(bind=connection)` (it joins this transaction)."""
    with factory.kw["bind"].begin() as connection:
        yield connection


def connection_of(executor) -> Connection:
    """The Core connection of `executor`: an ORM session's, or a Core connection itself."""
    return executor if isinstance(executor, Connection) else executor.connection()


def lock_owner(session, owner: str) -> None:
    """Serialize one owner's writes that count its rows against a limit (subscriptions,
    crowds), so the count cannot be raced past it. SQLite: every write transaction already
    holds the database's write lock (BEGIN IMMEDIATE)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(int(owner[:15], 16))))
