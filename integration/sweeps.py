"""The shell around `integration.unfollows`: when a watch is swept, the pages read, and the
unfollow events written to the journal and the outbox with the new sweep record, in one
transaction.

A watch is swept only once someone asked for unfollows (a `triggers/unfollowed` poll or an
`event: unfollowed` subscription), at most every `sweepEvery` hours (the smallest asked).
A sweep reads every readable page (100 accounts each): ceil(readable / 100) credits, plus
one anchor page once there is a previous sweep. A sweep holds a claim on its row, so two
callers never pay for the same sweep; a sweep interrupted by an upstream failure, the page
cap, the wall-clock budget or a killed worker writes nothing (its claim expires) and is
tried again later: nothing is emitted twice or falsely.

Between sweeps, an ordinary refresh of the watch decides the unfollows its pages prove, for
free (`free_unfollows`, called in the refresh's commit): written the same way, and the record
moved on to its pages (the unfollows out of it, so no sweep reports them again; new follows
in it, so their unfollows are seen too).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import time
import zlib
from dataclasses import dataclass

from sqlalchemy import bindparam, exists, or_, select, update
from sqlalchemy.exc import IntegrityError

from integration import known
from integration.db import transaction
from integration.detection import Page
from integration.errors import UpstreamFailure
from integration.filters import Filters
from integration.jobs import CLAIMABLE
from integration.models import Delivery, Event, Subscription, UnfollowSweep, Watch
from integration.observability import log
from integration.platforms import Platform
from integration.services import Services
from integration.unfollows import Ask, Interrupted, Record, next_ask, seen_in_refresh, unfollowed
from integration.upstream import Meter
from integration.items import UNFOLLOWED

logger = logging.getLogger(__name__)

SWEEP_EVERY_DEFAULT = 24   # hours (CONTRACT.md: 1 to 168)
CLAIM = dt.timedelta(minutes=15)  # longer than any sweep; a killed worker's sweep restarts after it


@dataclass(frozen=True)
class SweepResult:
    complete: bool
    unfollows: int = 0
    pages: int = 0
    interrupted: str | None = None


def want(svc: Services, watch_id: int, sweep_every: int) -> None:
    """Record that someone wants the watch's unfollows, at most every `sweep_every` hours
    (the smallest asked stands; a smaller one brings the next sweep forward)."""
    with svc.sessions() as session:  # most polls change nothing: no write lock for them
        stored = session.scalar(select(UnfollowSweep.sweep_every_hours).where(UnfollowSweep.watch_id == watch_id))
    if stored is not None and stored <= sweep_every:
        return
    for _ in range(2):
        try:
            with transaction(svc.sessions) as session:
                row = session.get(UnfollowSweep, watch_id, with_for_update=True)
                if row is None:
                    session.add(UnfollowSweep(watch_id=watch_id, sweep_every_hours=sweep_every,
                                              last_sequence=0, sweeps=0, interruptions=0))
                elif sweep_every < row.sweep_every_hours:
                    row.sweep_every_hours = sweep_every
                    if row.swept_at is not None:
                        row.next_sweep_at = row.swept_at + dt.timedelta(hours=sweep_every)
            return
        except IntegrityError:
            continue  # inserted concurrently: update it on the next turn


def run_if_due(svc: Services, watch_id: int, api_key: str, platform: Platform, meter: Meter, *,
               budget_seconds: float | None = None) -> SweepResult | None:
    """Sweep now when due and not being swept; None when not due (nothing paid)."""
    now = svc.clock()
    token = secrets.token_hex(16)
    with transaction(svc.sessions) as session:
        claimed = session.execute(
            update(UnfollowSweep)
            .where(UnfollowSweep.watch_id == watch_id,
                   or_(UnfollowSweep.next_sweep_at.is_(None), UnfollowSweep.next_sweep_at <= now),
                   or_(UnfollowSweep.claim_until.is_(None), UnfollowSweep.claim_until < now))
            .values(claim_token=token, claim_until=now + CLAIM)
            .execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        return None
    return _sweep(svc, watch_id, token, api_key, platform, meter, budget_seconds)


def _sweep(svc, watch_id, token, api_key, platform, meter, budget_seconds) -> SweepResult:
    started = svc.clock()
    with svc.sessions() as session:
        watch = session.get(Watch, watch_id)
        row = session.get(UnfollowSweep, watch_id)
        handle, start_sequence = watch.handle, watch.last_sequence
        stored, record = (row.accounts, row.top_cursor), _stored(row)
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    pages: list[Page] = []
    top = record.top if record else None
    while isinstance(ask := next_ask(pages, page_cap=svc.settings.sweep_page_cap, top=top), Ask):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return _interrupted(svc, watch_id, token, "budget", len(pages))
        try:
            page = svc.client.fetch_page(api_key, handle, platform.request_source, count=ask.count,
                                         min_time=ask.min_time, meter=meter, budget=left)
        except UpstreamFailure as failure:
            return _interrupted(svc, watch_id, token, f"upstream_{failure.kind}", len(pages))
        pages.append(Page(page.accounts, page.max_cursor, page.min_cursor, page.has_more, page.total,
                          asked_min_time=ask.min_time, asked_count=ask.count))
    read = ask
    if not read.complete:
        return _interrupted(svc, watch_id, token, read.interrupted.value, read.pages,
                            retry=read.interrupted is not Interrupted.PAGE_CAP)
    return _commit(svc, watch_id, token, stored, read, started, start_sequence)


def _interrupted(svc, watch_id, token, reason: str, pages: int, retry: bool = True) -> SweepResult:
    """Nothing decided: the previous record stays; try again later (a page cap only at the
    next regular time, since it would stop there again)."""
    now = svc.clock()
    with transaction(svc.sessions) as session:
        row = session.get(UnfollowSweep, watch_id, with_for_update=True)
        if row is not None and row.claim_token == token:
            wait = (dt.timedelta(minutes=svc.settings.sweep_retry_minutes) if retry
                    else dt.timedelta(hours=row.sweep_every_hours))
            row.next_sweep_at = now + wait
            row.claim_token = row.claim_until = None
            row.interruptions += 1
    log(logger, logging.WARNING, "unfollow sweep interrupted; nothing emitted", watch_id=watch_id,
        reason=reason, pages=pages)
    return SweepResult(complete=False, pages=pages, interrupted=reason)


def _commit(svc, watch_id, token, stored, read, started, start_sequence) -> SweepResult:
    now = _now(svc)
    with transaction(svc.sessions) as session:
        # The watch first, then the row: the order a refresh's commit locks them in.
        watch = session.get(Watch, watch_id, with_for_update=True)
        row = session.get(UnfollowSweep, watch_id, with_for_update=True)
        if row is None or watch is None or row.claim_token != token:
            return SweepResult(complete=False, pages=read.pages, interrupted="claim_lost")
        raced = (row.accounts, row.top_cursor) != stored
        if not raced:
            gone = _record_sweep(session, watch, row, _stored(row), read, started, start_sequence, now)
    if raced:
        # A refresh changed the record while this sweep read (its claim had expired): this read
        # may hold what it announced, and the record may hold follows this read predates.
        # Nothing decided; swept again later.
        return _interrupted(svc, watch_id, token, "raced", read.pages)
    log(logger, logging.INFO, "unfollow sweep complete", watch_id=watch_id, pages=read.pages,
        readable=len(read.accounts), unfollows=len(gone))
    return SweepResult(complete=True, unfollows=len(gone), pages=read.pages)


def _record_sweep(session, watch, row, record, read, started, start_sequence, now) -> list[dict]:
    """Write the sweep's unfollows and make its read the new record."""
    gone = unfollowed(record, read)
    write_unfollows(session, watch, gone, now)
    row.accounts = _packed(read.accounts)
    row.top_cursor = read.top
    row.swept_at = started
    row.last_sequence = start_sequence
    row.next_sweep_at = started + dt.timedelta(hours=row.sweep_every_hours)
    row.claim_token = row.claim_until = None
    row.sweeps += 1
    return gone


def _now(svc: Services) -> dt.datetime:
    now = svc.clock()
    return now.replace(microsecond=now.microsecond // 1000 * 1000)  # as watches._commit: `since` compares it


def _stored(row: UnfollowSweep) -> Record | None:
    return Record(tuple(json.loads(zlib.decompress(row.accounts))), row.top_cursor) if row.accounts else None


def _packed(accounts) -> bytes:
    return zlib.compress(json.dumps(list(accounts), separators=(",", ":")).encode())


def write_unfollows(session, watch: Watch, gone: list[dict], now: dt.datetime) -> None:
    """In the caller's transaction: one `unfollowed` event per account (the deepest first, so
    the newest follow gets the highest number), a delivery to each `unfollowed`
    subscription whose filters keep it, and the account forgotten."""
    if not gone:
        return
    subscriptions = [(sub_id, Filters.from_json(stored)) for sub_id, stored in session.execute(
        select(Subscription.id, Subscription.filters)
        .where(Subscription.watch_id == watch.id, Subscription.event == UNFOLLOWED))]
    sequence = watch.last_sequence
    for account in reversed(gone):
        sequence += 1
        event = Event(watch_id=watch.id, sequence=sequence, account_id=account["id"], detected_at=now,
                      payload=json.dumps(account), event=UNFOLLOWED)
        session.add(event)
        session.flush()
        session.add_all(Delivery(id=secrets.token_hex(12), subscription_id=sub_id, event_id=event.id,
                                 next_attempt_at=now) for sub_id, filters in subscriptions if filters.keep(account))
    # Forgotten: following it again is a new follow (detection announces unknown accounts only).
    known.forget(session, watch.id, [a["id"] for a in gone])  # under the watch row's lock, taken by every caller
    watch.last_sequence = sequence


def record_version(session, watch_id: int) -> int | None:
    """The number of complete sweeps of the watch, None without a record: read before a
    refresh reads its first page (with its lease: `record_version_of`), checked by
    `free_unfollows` at its commit."""
    return session.connection().execute(_RECORD_VERSION, {"w": watch_id}).scalar()


def record_version_of(watch_table):
    """`record_version` of the row of `watch_table` a statement reads or updates: a scalar
    subquery, so the statement that takes a refresh's lease returns it (watches.LEASE_STATE)."""
    return _version(watch_table.c.id).correlate(watch_table).scalar_subquery()


_SWEEPS = UnfollowSweep.__table__


def _version(watch_id):
    return select(_SWEEPS.c.sweeps).where(_SWEEPS.c.watch_id == watch_id, _SWEEPS.c.accounts.is_not(None))


_RECORD_VERSION = _version(bindparam("w"))  # built once


def free_unfollows(session, watch: Watch, version: int | None, pages, now: dt.datetime) -> int:
    """In a refresh's commit (the watch locked): the unfollows its pages prove against the
    record (`unfollows.seen_in_refresh`), written as a sweep writes them, and the record
    moved on to these pages. Nothing when a sweep completed since the refresh began
    (`version`) or is reading now: its record may be newer than these pages."""
    if version is None:
        return 0
    row = session.get(UnfollowSweep, watch.id, with_for_update=True)
    if row is None or row.sweeps != version or (row.claim_until is not None and row.claim_until >= now):
        return 0
    record = _stored(row)
    seen = seen_in_refresh(record, pages)
    if seen is None:
        return 0
    write_unfollows(session, watch, list(seen.gone), now)
    if seen.record.top != record.top or [a["id"] for a in seen.record.accounts] != [a["id"] for a in record.accounts]:
        # Most refreshes (nothing followed or unfollowed) leave it as it is: no write.
        row.accounts, row.top_cursor = _packed(seen.record.accounts), seen.record.top
    if seen.gone:
        log(logger, logging.INFO, "unfollows seen in a refresh", watch_id=watch.id, unfollows=len(seen.gone))
    return len(seen.gone)


def due_for_worker(svc: Services, now: dt.datetime, limit: int) -> list[tuple[int, str, Platform]]:
    """Watches with an `unfollowed` subscription whose sweep is due: (watch id, stored key,
    platform of the oldest such subscription). The sweep's own claim keeps workers apart."""
    if limit <= 0:
        return []
    listening = exists().where(Subscription.watch_id == Watch.id, Subscription.event == UNFOLLOWED)
    with svc.sessions() as session:
        rows = session.execute(
            select(Watch.id, Watch.api_key_enc)
            .join(UnfollowSweep, UnfollowSweep.watch_id == Watch.id)
            .where(or_(UnfollowSweep.next_sweep_at.is_(None), UnfollowSweep.next_sweep_at <= now),
                   or_(UnfollowSweep.claim_until.is_(None), UnfollowSweep.claim_until < now),
                   Watch.api_key_enc.is_not(None), Watch.status.in_(CLAIMABLE), listening)
            .order_by(UnfollowSweep.next_sweep_at).limit(limit)).all()
        platforms: dict[int, Platform] = {}
        for watch_id, platform in session.execute(
                select(Subscription.watch_id, Subscription.platform)
                .where(Subscription.watch_id.in_([r[0] for r in rows]), Subscription.event == UNFOLLOWED)
                .order_by(Subscription.created_at)):
            platforms.setdefault(watch_id, Platform(platform))
    return [(watch_id, key_enc, platforms.get(watch_id, Platform.API)) for watch_id, key_enc in rows]
