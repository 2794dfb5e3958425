"""The exact credit ledger and the daily budget (CONTRACT.md, "Cost controls").

Every upstream 200 is one credit (failed calls are free), counted per key owner and UTC
day in `credit_days` by one UPSERT (`credits = credits + 1`) the moment the answer
arrives, so the count is atomic across processes and machines and survives restarts.

A budget (`X-Daily-Credit-Budget`, or the one stored on a watch for the worker) is held
by reservations: before an upstream call, one conditional UPDATE takes a credit
(`reserved = reserved + 1 WHERE credits + reserved < budget`); the call's 200 turns it
into a spent credit, a failed call keeps it for the retry, and the request's end gives
back what is left. So concurrent callers can never push `credits` over the budget: the
only overshoot is a reservation a killed process never gave back, which only makes the
budget stricter for the rest of that day.
"""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from integration.db import connection_of, core_transaction, transaction
from integration.driver_sql import Prepared, Writes
from integration.models import CreditDay, WatchDay

USAGE_DAYS = 30


class BudgetReached(Exception):
    """The key's daily budget is spent: no upstream call until `resets_at` (next 00:00 UTC)."""

    def __init__(self, resets_at: dt.datetime):
        super().__init__(f"daily budget reached until {resets_at.isoformat()}")
        self.resets_at = resets_at


def next_reset(now: dt.datetime) -> dt.datetime:
    return dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time())


def _upsert(executor, model, keys: dict, increments: dict) -> None:
    """INSERT the row with `increments` as its values, or add them to the existing row: one
    statement, atomic on SQLite and PostgreSQL (ON CONFLICT DO UPDATE). `executor`: an ORM
    session or a Core connection (Core either way: the ORM's execution path cost more than
    the statement)."""
    conn = connection_of(executor)
    statement, params = _upsert_write(conn.dialect.name, model, keys, increments)
    statement.run(conn, params)


def _upsert_write(dialect_name: str, model, keys: dict, increments: dict, prefix: str = "") -> tuple[Prepared, dict]:
    """`_upsert`'s statement and parameters, not run; `prefix` on its parameters' names (a
    statement sent with others: driver_sql.Writes)."""
    return (_upsert_statement(dialect_name, model, tuple(keys), tuple(increments), prefix),
            _params(prefix, keys, increments))


def _params(prefix: str, keys: dict, increments: dict) -> dict:
    return {**{prefix + k: v for k, v in keys.items()}, **{f"{prefix}add_{k}": v for k, v in increments.items()}}


@functools.cache
def _upsert_statement(dialect_name: str, model, keys: tuple, increments: tuple, prefix: str = "") -> Prepared:
    # Built once per shape, values bound at execution: building and hashing the statement on
    # every credit cost more than running it (bench/bench_unitcost.py, refresh path).
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    table = model.__table__
    values = {c.name: 0 for c in table.columns if c.name not in keys}
    values.update({k: bindparam(prefix + k) for k in keys})
    values.update({k: bindparam(f"{prefix}add_{k}") for k in increments})
    return Prepared(dialect.insert(table).values(**values).on_conflict_do_update(
        index_elements=list(keys), set_={k: table.c[k] + bindparam(f"{prefix}add_{k}") for k in increments}))


def add(sessions, owner: str, day: dt.date, *, credits: int = 0, reserved: int = 0, refreshes: int = 0) -> None:
    """The owner's day line, in a write transaction of its own, committed before returning
    (the action's credit: counted the moment the upstream's 200 arrives, as before).

    On a Core connection of the sessions' engine, not an ORM session: the session's setup and
    teardown cost more than the statement (docs/SCALING.md "The action's overhead"). Same
    statement, same BEGIN (IMMEDIATE on SQLite), and SQLAlchemy's events still see it."""
    increments = _increments(credits, reserved, refreshes)
    if increments:
        with core_transaction(sessions) as connection:
            _upsert(connection, CreditDay, {"owner_hash": owner, "day": day}, increments)


def try_reserve(sessions, owner: str, day: dt.date, budget: int) -> bool:
    """Take one credit of today's budget for a call about to be made; False when none is left."""
    with transaction(sessions) as session:
        return reserve_in(session, owner, day, budget)


def reserve_in(session, owner: str, day: dt.date, budget: int) -> bool:
    """`try_reserve` in the caller's transaction (a refresh's claim): one statement, the
    day's row inserted holding the reservation, or updated only while the budget has room."""
    if budget <= 0:
        return False
    conn = session.connection()
    # RETURNING, not rowcount: psycopg reports -1 for an upsert here.
    return conn.execute(_reserve_statement(conn.dialect.name),
                        {"owner_hash": owner, "day": day, "budget": budget}).first() is not None


@functools.cache
def _reserve_statement(dialect_name: str):
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    table = CreditDay.__table__
    return dialect.insert(table).values(owner_hash=bindparam("owner_hash"), day=bindparam("day"), credits=0,
                                        reserved=1, refreshes=0).on_conflict_do_update(
        index_elements=["owner_hash", "day"], set_={"reserved": table.c.reserved + 1},
        where=table.c.credits + table.c.reserved < bindparam("budget")).returning(table.c.reserved)


@dataclass
class Account:
    """Whose credits a Meter spends, and within which budget (None: no budget)."""

    sessions: object = field(repr=False)
    owner: str
    day: dt.date
    resets_at: dt.datetime
    budget: int | None = None

    @classmethod
    def for_owner(cls, svc, owner: str, budget: int | None) -> "Account":
        now = svc.clock()
        return cls(svc.sessions, owner, now.date(), next_reset(now), budget)

    def reserve(self) -> None:
        if self.budget is not None and not try_reserve(self.sessions, self.owner, self.day, self.budget):
            raise BudgetReached(self.resets_at)

    def spent(self, reserved: bool) -> None:
        add(self.sessions, self.owner, self.day, credits=1, reserved=-1 if reserved else 0)

    def give_back(self, reservations: int) -> None:
        add(self.sessions, self.owner, self.day, reserved=-reservations)

    def reserve_in(self, session) -> bool:
        """One reservation in the caller's transaction (no budget: none needed, True)."""
        return self.budget is None or reserve_in(session, self.owner, self.day, self.budget)

    def refreshed(self, session, watch_id: int, credits: int, spent: tuple[int, int] = (0, 0),
                  also: tuple | None = None) -> None:
        """The owner's and the watch's lines of a refresh, written now in the caller's
        transaction (the refresh's commit: no transaction, and on SQLite no write lock, of
        their own). As `refresh_writes`."""
        self.refresh_writes(session, watch_id, credits, spent, also).run(connection_of(session))

    def refresh_writes(self, session, watch_id: int, credits: int, spent: tuple[int, int] = (0, 0),
                       also: tuple | None = None) -> Writes:
        """The writes of `refreshed`, for the caller to run or to send with its next read
        (driver_sql.Writes). `spent`: the refresh's credits not written yet and the reservations
        they used (RefreshMeter.pending): the owner's credits, counted in the same commit.
        `also`: the caller's write (a Prepared statement, its parameters, none prefixed `o_`
        or `w_`), first: on PostgreSQL in the same statement."""
        owner_keys, owner = {"owner_hash": self.owner, "day": self.day}, _spent(*spent, refreshes=1)
        watch_keys, watch = {"watch_id": watch_id, "day": self.day}, {"credits": credits, "refreshes": 1}
        dialect_name = connection_of(session).dialect.name
        return Writes([*([also] if also is not None else []),
                       _upsert_write(dialect_name, CreditDay, owner_keys, owner, "o_"),
                       _upsert_write(dialect_name, WatchDay, watch_keys, watch, "w_")])

    def unfinished(self, watch_id: int, credits: int, spent: tuple[int, int]) -> None:
        """A refresh that did not commit: its credits (the owner's `spent`, not written yet,
        and the watch's line), in one transaction of their own."""
        with transaction(self.sessions) as session:
            increments = _spent(*spent)
            if increments:
                _upsert(session, CreditDay, {"owner_hash": self.owner, "day": self.day}, increments)
            if credits:
                try:
                    with session.begin_nested():
                        _upsert(session, WatchDay, {"watch_id": watch_id, "day": self.day},
                                {"credits": credits, "refreshes": 0})
                except IntegrityError:
                    pass  # the watch was deleted meanwhile; the owner's credits are counted all the same


def _increments(credits: int = 0, reserved: int = 0, refreshes: int = 0) -> dict:
    """CreditDay increments, the zero ones left out (one statement shape per set)."""
    return {k: v for k, v in (("credits", credits), ("reserved", reserved), ("refreshes", refreshes)) if v}


def _spent(credits: int, reserved: int, refreshes: int = 0) -> dict:
    """CreditDay increments: credits spent, the reservations they used given back."""
    return _increments(credits, -reserved, refreshes)


def spent_on(sessions, owner: str, day: dt.date) -> int:
    with sessions() as session:
        return session.scalar(select(CreditDay.credits).where(CreditDay.owner_hash == owner,
                                                               CreditDay.day == day)) or 0


def days(sessions, owner: str, today: dt.date, n: int = USAGE_DAYS) -> list[dict]:
    """Credits and refreshes per UTC day, newest first, every one of the last `n` days."""
    first = today - dt.timedelta(days=n - 1)
    with sessions() as session:
        rows = {d: (c, r) for d, c, r in session.execute(
            select(CreditDay.day, CreditDay.credits, CreditDay.refreshes)
            .where(CreditDay.owner_hash == owner, CreditDay.day >= first))}
    out = []
    for i in range(n):
        day = today - dt.timedelta(days=i)
        credits, refreshes = rows.get(day, (0, 0))
        out.append({"day": day.isoformat(), "credits": credits, "refreshes": refreshes})
    return out


def watch_credits(session, watch_ids: list[int], since: dt.date) -> dict[int, int]:
    if not watch_ids:
        return {}
    return dict(session.execute(select(WatchDay.watch_id, func.sum(WatchDay.credits))
                                .where(WatchDay.watch_id.in_(watch_ids), WatchDay.day >= since)
                                .group_by(WatchDay.watch_id)).all())
