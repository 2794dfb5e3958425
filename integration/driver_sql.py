"""A hot statement run on the driver's cursor, inside the caller's SQLAlchemy transaction.

A trigger call through a refresh runs seven statements; SQLAlchemy's execution path (cache
key, execution context, parameter and result processing objects, event checks) cost more than
the statements themselves (bench/bench_unitcost.py). A `Prepared` statement is still built as
a SQLAlchemy construct (one copy of each statement) and compiled by SQLAlchemy, once per
dialect; its parameters and results go through the column types' own processors (SQLAlchemy's
public `bind_processor` / `result_processor`), so the values stored and read are the ones the
rest of the code writes and reads. What it skips is the per-execution machinery.

It runs in a transaction SQLAlchemy began (BEGIN and COMMIT stay SQLAlchemy's), tells the
engine's `before_cursor_execute` listeners (statement counters in tests and benches), and
raises the driver's errors wrapped as SQLAlchemy's (`OperationalError`, `IntegrityError`...),
so callers and error handlers see what an `execute` would have raised.
"""
from __future__ import annotations

import functools
from collections import namedtuple

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound


class Prepared:
    """`statement` (a select, or DML with or without RETURNING), compiled once per dialect."""

    __slots__ = ("statement", "_compiled")

    def __init__(self, statement):
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def rows(self, conn: Connection, params: dict, riding: Writes | None = None) -> list:
        """Every row (attribute access by column name, like SQLAlchemy's rows). `riding`: writes
        sent with this read (see Writes); the rows are the database as it was before them."""
        if riding is None or riding.done:
            return self._run(conn, params, True)
        if conn.dialect.name != "postgresql":  # no data-modifying WITH (SQLite): the read, then them
            rows = self._run(conn, params, True)
            riding.run(conn)
            return rows
        riding.done = True
        return _carrying(self, riding.statements())._run(conn, {**riding.params(), **params}, True)

    def first(self, conn: Connection, params: dict):
        rows = self._run(conn, params, True)
        return rows[0] if rows else None

    def one(self, conn: Connection, params: dict):
        rows = self._run(conn, params, True)
        if len(rows) != 1:
            raise NoResultFound("no row") if not rows else MultipleResultsFound("more than one row")
        return rows[0]

    def run(self, conn: Connection, params: dict) -> None:
        """A statement whose rows are not wanted."""
        self._run(conn, params, False)

    def _run(self, conn: Connection, params: dict, fetch: bool):
        if not conn.in_transaction():
            # What SQLAlchemy's `execute` does (autobegin): the statement then belongs to a
            # transaction the connection's `commit()` commits. Without it a write on
            # PostgreSQL would sit in the driver's own transaction, rolled back when the
            # connection goes back to the pool.
            conn.begin()
        compiled = self._compiled.get(conn.dialect.name)
        if compiled is None:
            compiled = self._compiled[conn.dialect.name] = _Compiled(self.statement, conn.dialect)
        fetched = execute(conn, compiled.sql, compiled.values(params), fetch)
        return compiled.make_rows(fetched) if fetch else None


class Writes:
    """Writes whose results nobody reads, for the next read of the same transaction to carry
    (`Prepared.rows(..., riding=)`): on PostgreSQL as data-modifying WITHs of that read, so a
    round trip and a statement through this module fewer; elsewhere run after it. Either way
    the read sees the database as it was before them (PostgreSQL's WITHs and the read share
    one snapshot). `run` sends them if no read carried them, the caller's last word: on
    PostgreSQL as one statement too (the last write carrying the others), elsewhere in order."""

    __slots__ = ("writes", "done")

    def __init__(self, writes: list[tuple[Prepared, dict]]):
        self.writes = writes  # (statement, its parameters), in order
        self.done = False

    def statements(self) -> tuple[Prepared, ...]:
        return tuple(statement for statement, _ in self.writes)

    def params(self) -> dict:
        return {name: value for _, params in self.writes for name, value in params.items()}

    def run(self, conn: Connection) -> None:
        if self.done:
            return
        self.done = True
        if conn.dialect.name == "postgresql" and len(self.writes) > 1:
            *carried, last = self.statements()
            _carrying(last, tuple(carried)).run(conn, self.params())
            return
        for statement, params in self.writes:
            statement.run(conn, params)


@functools.cache
def _carrying(main: Prepared, writes: tuple[Prepared, ...]) -> Prepared:
    """`main` (a read or a write) carrying `writes` as data-modifying WITHs (PostgreSQL), built
    once per pair (by identity). Their parameters share one namespace: a name in two of them
    would bind one value to both, so that is refused."""
    seen: set[str] = set()
    for prepared in (main, *writes):
        # The parameters given at execution (constants get unique names when compiled together).
        names = {bind.key for bind in prepared.statement.compile().binds.values() if bind.required}
        if names & seen:
            raise TypeError(f"statements riding together share parameter names: {sorted(names & seen)}")
        seen |= names
    statement = main.statement
    for n, write in enumerate(writes):
        statement = statement.add_cte(write.statement.cte(f"riding_{n}"))
    return Prepared(statement)


def execute(conn: Connection, sql: str, values=(), fetch: bool = False) -> list | None:
    """`sql` (the dialect's own text and parameter style) on the driver's cursor of `conn`:
    the engine's `before_cursor_execute` listeners told, the driver's rows returned as they
    come (`fetch`), its errors raised as SQLAlchemy's."""
    dialect = conn.dialect
    pooled = conn.connection
    driver_connection = pooled.dbapi_connection
    # One cursor per driver connection, kept in the pool's `info` for it (cleared when the
    # connection is replaced): psycopg's cursor keeps the loaders and dumpers it chose for the
    # types it met, and a new cursor per statement cost ~10 us of CPU more.
    cursor = pooled.info.get(_CURSOR)
    if cursor is None:
        cursor = pooled.info[_CURSOR] = driver_connection.cursor()
    try:
        listeners = conn.dispatch.before_cursor_execute
        if listeners:
            listeners(conn, cursor, sql, values, None, False)
        cursor.execute(sql, values)
        return cursor.fetchall() if fetch else None
    except dialect.loaded_dbapi.Error as exc:
        lost = dialect.is_disconnect(exc, driver_connection, cursor)
        if lost:
            # As SQLAlchemy does on a lost connection: this one is dropped, and the idle ones
            # (a server restart killed them too) are closed, so the next call opens fresh
            # ones instead of failing once per dead connection.
            conn.invalidate(exc)
            conn.engine.pool.dispose()
        raise DBAPIError.instance(sql, values, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost,
                                  dialect=dialect) from exc


_CURSOR = "tiktok_driver_cursor"  # `execute`'s cursor, in the pool's info of its connection


class _Compiled:
    """One dialect's SQL text, parameter order and value processors for a statement."""

    def __init__(self, statement, dialect):
        compiled = statement.compile(dialect=dialect)
        if compiled.insert_prefetch or compiled.update_prefetch:
            # A column default SQLAlchemy computes in Python at each execution (models' `default=`):
            # not run here, so such a statement must give every column its value.
            raise TypeError(f"a Prepared statement must set every column with a Python default: {statement}")
        self.sql = compiled.string
        self.order = compiled.positiontup  # positional paramstyles (SQLite's "?"); None: named
        binds = compiled.bind_names.items()  # parameter -> its name in the SQL (anonymous ones included)
        self.constants = {name: bind.effective_value for bind, name in binds if not bind.required}
        self.binders = {name: processor for bind, name in binds
                        if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None}
        columns = list(getattr(statement, "selected_columns", None) or getattr(statement, "exported_columns", ()))
        self.row = namedtuple("Row", [column.key for column in columns], rename=True) if columns else None
        readers = [(i, reader) for i, column in enumerate(columns)
                   if (reader := column.type.dialect_impl(dialect).result_processor(dialect, None)) is not None]
        self.readers = readers or None  # (column index, processor): most columns need none

    def values(self, params: dict):
        merged = {**self.constants, **params} if self.constants else params
        binders = self.binders
        if binders:
            merged = {name: (binders[name](value) if name in binders and value is not None else value)
                      for name, value in merged.items()}
        return tuple(merged[name] for name in self.order) if self.order is not None else merged

    def make_rows(self, fetched: list) -> list:
        make = functools.partial(tuple.__new__, self.row)  # namedtuple._make without its Python frame
        readers = self.readers
        if readers is None:
            return list(map(make, fetched))
        rows = []
        for row in fetched:
            row = list(row)
            for i, reader in readers:
                if row[i] is not None:
                    row[i] = reader(row[i])
            rows.append(make(row))
        return rows
