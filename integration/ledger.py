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
from sqlalchemy.engine import Connection

from integration.db import transaction
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
    session or a Core connection."""
    dialect = executor.dialect if isinstance(executor, Connection) else executor.get_bind().dialect
    stmt = _upsert_statement(dialect.name, model, tuple(keys), tuple(increments))
    executor.execute(stmt, {**keys, **{f"add_{k}": v for k, v in increments.items()}})


@functools.cache
def _upsert_statement(dialect_name: str, model, keys: tuple, increments: tuple):
    # Built once per shape, values bound at execution: building and hashing the statement on
    # every credit cost more than running it (bench/bench_unitcost.py, refresh path).
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    table = model.__table__
    values = {c.name: 0 for c in table.columns if c.name not in keys}
    values.update({k: bindparam(k) for k in keys})
    values.update({k: bindparam(f"add_{k}") for k in increments})
    return dialect.insert(table).values(**values).on_conflict_do_update(
        index_elements=list(keys), set_={k: table.c[k] + bindparam(f"add_{k}") for k in increments})


def add(sessions, owner: str, day: dt.date, *, credits: int = 0, reserved: int = 0, refreshes: int = 0) -> None:
    """The owner's day line, in a write transaction of its own, committed before returning
    (the action's credit: counted the moment the upstream's 200 arrives, as before).

    On a Core connection of the sessions' engine, not an ORM session: the session's setup and
    teardown cost more than the statement (docs/SCALING.md "The action's overhead"). Same
    statement, same BEGIN (IMMEDIATE on SQLite), and SQLAlchemy's events still see it."""
    increments = {k: v for k, v in (("credits", credits), ("reserved", reserved), ("refreshes", refreshes)) if v}
    if increments:
        with sessions.kw["bind"].begin() as connection:
            _upsert(connection, CreditDay, {"owner_hash": owner, "day": day}, increments)


def add_watch(sessions, watch_id: int, day: dt.date, *, credits: int, refreshes: int) -> None:
    with transaction(sessions) as session:
        _upsert(session, WatchDay, {"watch_id": watch_id, "day": day}, {"credits": credits, "refreshes": refreshes})


def try_reserve(sessions, owner: str, day: dt.date, budget: int) -> bool:
    """Take one credit of today's budget for a call about to be made; False when none is left."""
    if budget <= 0:
        return False
    with transaction(sessions) as session:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(dialect.insert(CreditDay.__table__)
                        .values(owner_hash=owner, day=day, credits=0, reserved=0, refreshes=0)
                        .on_conflict_do_nothing(index_elements=["owner_hash", "day"]))
        taken = session.execute(
            update(CreditDay)
            .where(CreditDay.owner_hash == owner, CreditDay.day == day,
                   CreditDay.credits + CreditDay.reserved < budget)
            .values(reserved=CreditDay.reserved + 1)
            .execution_options(synchronize_session=False)).rowcount
    return taken == 1


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

    def refreshed(self, session, watch_id: int, credits: int) -> None:
        """The owner's and the watch's lines of a refresh, in the caller's transaction (the
        refresh's commit: no transaction, and on SQLite no write lock, of their own)."""
        _upsert(session, CreditDay, {"owner_hash": self.owner, "day": self.day}, {"refreshes": 1})
        _upsert(session, WatchDay, {"watch_id": watch_id, "day": self.day}, {"credits": credits, "refreshes": 1})


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
