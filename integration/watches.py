"""The imperative shell around `integration.detection`: state from the database, pages
from the upstream, the journal and the outbox written back in one transaction.

Coalescing: a refresh holds a lease on its watch row (a conditional UPDATE, atomic on
SQLite and PostgreSQL). Callers inside the refresh window, and callers that arrive
while a refresh runs, wait for it and read the journal instead of paying again.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from types import SimpleNamespace

from sqlalchemy import bindparam, delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError, NoResultFound, OperationalError
from sqlalchemy.orm import Session

from integration import idset, known, ledger, sweeps
from integration.db import core_transaction, transaction
from integration.detection import NeedVerify, Outcome, Page, WatchState, step
from integration.driver_sql import Prepared, Writes
from integration.models import Delivery, Event, Subscription, Watch
from integration.errors import UpstreamFailure
from integration.filters import Filters
from integration.items import NEW_FOLLOWING, pack_samples
from integration.observability import DETECTION_SAFE_MODE, DETECTION_TRUNCATED, EVENTS_DETECTED, log
from integration.platforms import Platform
from integration.schedule import Wish, interval_for, next_poll
from integration.services import Services
from integration.upstream import Meter, RefreshMeter

logger = logging.getLogger(__name__)

WAIT_SECONDS = 25.0     # a waiting trigger call answers from the journal after this (Zapier: 30 s)


@dataclass
class RefreshResult:
    refreshed: bool          # this call paid for a refresh
    new_events: int = 0
    truncated: bool = False
    budget_reached: bool = False  # the daily budget stopped the refresh: the journal answers
    fresh: bool = False           # not needed: another refresh finished inside the window
    unfollows: int = 0            # unfollows this refresh's pages proved (integration/unfollows.py)
    scheduled: bool = False       # its commit also set the worker's next poll (ensure_fresh's `schedule`)
    answer: object = None         # the caller's `answer`, when read in one of the call's own transactions


@dataclass(frozen=True)
class _Claimed:
    """What a refresh needs of its watch, read in the transaction that took its lease."""

    handle: str
    state: WatchState
    record: int | None  # sweeps.record_version, before the first page
    sequence: int       # the journal's last number: unchanged at the commit, no id was forgotten meanwhile
    segments: int | None = None  # its known-id segments (known.segment_count): few are read whole
    top_ids: bytes | None = None  # state.top_ids as stored: written back as it is when unchanged


class WatchGone(Exception):
    """The watch was deleted while we waited for it (its first refresh failed, or it was idle)."""


TOUCH_EVERY = dt.timedelta(hours=1)  # `last_used_at` is written at most this often per watch
_W = Watch.__table__
# What a trigger call reads of its watch (not the baseline and detection state it does not need).
_OPENED = (_W.c.id, _W.c.owner_hash, _W.c.last_used_at, _W.c.check_every_minutes, _W.c.check_auto,
           _W.c.daily_budget, _W.c.last_refresh_at)
_THE_WATCH = (_W.c.owner_hash == bindparam("owner"), _W.c.handle == bindparam("handle"))
_OPEN = Prepared(select(*_OPENED).where(*_THE_WATCH))

# What a trigger call wants once its watch is fresh: its answer, read in the transaction that
# found the watch fresh or committed its refresh (one transaction fewer per call):
# answer(session, watch_id, riding) where `riding` (driver_sql.Writes, or None) are the commit's
# last writes, for the answer's first read to carry (Prepared.rows's `riding`).
Answer = Callable[[Session, int, Writes | None], object]


def open_watch(svc: Services, owner: str, handle: str, api_key: str, platform: Platform, meter: Meter,
               wish: Wish = Wish(), answer: Answer | None = None, **fresh) -> tuple[int, RefreshResult]:
    """The watch for (owner, handle), refreshed as `ensure_fresh` does, and marked used.

    A new watch is inserted holding its lease (so concurrent callers wait for its baseline
    instead of paying again) and deleted if that first refresh fails: a key the upstream
    refused leaves no row behind. The caller's `wish` (checkEvery, budget) is stored on the
    watch; a `checkEvery` makes the refresh window that long, whoever asks. Over the daily
    budget an existing watch is answered from its journal (a new one raises BudgetReached:
    it has no journal yet). With `answer`, the result carries `answer(session, watch_id, riding)`
    when it could be read in a transaction the call made anyway (else None: read it after).

    Transactions: a watch found fresh is one (the read and its answer); a refresh is two,
    the read that takes its lease and the commit that writes and answers (`_refresh`).

    Each turn: the first read (which decides most calls), else a new watch created, else the
    caller's changes written and the watch found fresh or claimed. A turn starts again when a
    concurrent caller created the watch first or the watch was deleted while we waited."""
    call = _Call(svc, owner, handle, api_key, platform, meter, wish, answer, fresh)
    for _ in range(3):
        now = svc.clock()
        watch, changes, decided = _read_and_maybe_lease(call, now)
        if decided is not None:
            return watch.id, _decided(call, watch.id, decided)
        if watch is None:
            created = _create(call, now)
            if created is None:
                continue  # created concurrently: wait for its refresh on the next turn
            return created
        _apply_changes(svc, watch, changes, now)
        result = _fresh_or_claim(call, watch, now)
        if result is None:
            continue  # deleted while we waited (WatchGone): read it again
        return watch.id, result
    raise RuntimeError("the watch kept disappearing")


@dataclass(frozen=True, slots=True)
class _Call:
    """One open_watch call's arguments, for its steps (a turn may run each of them)."""

    svc: Services
    owner: str
    handle: str
    api_key: str
    platform: Platform
    meter: Meter
    wish: Wish
    answer: Answer | None
    fresh: dict  # ensure_fresh's keywords; its `window` is set once the watch's is known (_fresh_or_claim)


def _read_and_maybe_lease(call: _Call, now: dt.datetime):
    """open_watch's first read: (watch, changes, decided). `watch` is its row as read (None: no
    watch yet), `changes` what the caller's wish changes on it; `decided` is what the read itself
    decided (a RefreshResult: fresh, answered there, or over budget; a Lease: taken here), else
    None: the steps after the read decide. Deciding in the read saves most calls a transaction."""
    svc = call.svc
    watch, changes = None, {}
    try:
        with svc.reads() as session:  # no write lock unless the lease is taken (SQLite)
            row, opened = _open_or_take(svc, session.connection(), call.owner, call.handle, now, call.wish,
                                        call.meter, call.fresh)
            watch = SimpleNamespace(**row._asdict()) if row is not None else None
            if opened is not None:
                # Stale and free: its lease taken by the read itself (PostgreSQL's autocommit).
                return watch, changes, opened
            changes = call.wish.changes(watch) if watch is not None else {}
            if watch is not None and not changes and not _touch_due(watch, now):
                opened = _fresh_or_lease(svc, session, watch, now, call.meter, call.fresh, call.answer)
                if opened is not None:
                    session.commit()  # the lease (SQLite; PostgreSQL's reads are autocommit)
                    return watch, changes, opened
    except OperationalError as error:
        if watch is None or not _lock_conflict(error):
            raise
        # SQLite: another writer committed since our read began, so the read could not
        # take the write lock for the lease: the steps after the read take it in a write transaction.
    return watch, changes, None


def _decided(call: _Call, watch_id: int, decided) -> RefreshResult:
    """The call's result when its first read decided it (after that read's transaction ended):
    the read's RefreshResult, or the refresh under the lease the read took."""
    if isinstance(decided, RefreshResult):
        return decided
    _held(call.svc, watch_id, decided, call.meter)
    return _refresh(call.svc, watch_id, decided.token, call.api_key, call.platform, call.meter, decided.claimed,
                    answer=call.answer)


def _create(call: _Call, now: dt.datetime) -> tuple[int, RefreshResult] | None:
    """A new watch and its first refresh (its baseline): inserted holding its lease, deleted if
    that refresh fails (open_watch says why). None: another caller created it first (the
    insert's IntegrityError)."""
    svc = call.svc
    token = secrets.token_hex(16)
    try:
        with transaction(svc.sessions) as session:
            created = Watch(owner_hash=call.owner, handle=call.handle, last_used_at=now, lease_token=token,
                            lease_until=lease_until(svc), check_auto=False)
            for name, value in call.wish.changes(created).items():
                setattr(created, name, value)
            session.add(created)
            session.flush()
            watch_id = created.id
    except IntegrityError:
        return None
    svc.leases.hold(token, watch_id)
    try:
        return watch_id, _refresh(svc, watch_id, token, call.api_key, call.platform, call.meter, answer=call.answer)
    except BaseException:
        _delete_unborn(svc, watch_id)
        raise


def _apply_changes(svc: Services, watch, changes: dict, now: dt.datetime) -> None:
    """The caller's wish, and `last_used_at` when due (at most every TOUCH_EVERY), written in
    a transaction of their own and copied onto `watch`: the window and the claim after it read
    the watch as it is now."""
    if _touch_due(watch, now):
        changes["last_used_at"] = now
    if changes:
        with transaction(svc.sessions) as session:
            session.execute(update(Watch).where(Watch.id == watch.id).values(**changes)
                            .execution_options(synchronize_session=False))
        for name, value in changes.items():
            setattr(watch, name, value)


def _fresh_or_claim(call: _Call, watch, now: dt.datetime) -> RefreshResult | None:
    """The result of a call its first read did not decide: fresh as of a read of the window,
    else ensure_fresh's (the claim, or the wait for another refresh). None: the watch was
    deleted while we waited (WatchGone), for open_watch to read it again."""
    svc = call.svc
    with svc.reads() as session:  # no statement unless the watch has a checkEvery interval
        call.fresh["window"] = _window(session, watch, now, call.fresh)
    if refreshed_since(watch.last_refresh_at, _fresh_cutoff(svc, now, call.fresh["window"])):
        # Refreshed inside the window as of the read above: the journal answers, without the
        # claim's write transaction (ensure_fresh would find the same and answer the same).
        return RefreshResult(refreshed=False, fresh=True)
    try:
        return ensure_fresh(svc, watch.id, call.api_key, call.platform, call.meter, answer=call.answer, **call.fresh)
    except WatchGone:
        return None
    except ledger.BudgetReached:
        return RefreshResult(refreshed=False, budget_reached=True)


def _open_or_take(svc: Services, conn, owner: str, handle: str, now: dt.datetime, wish: Wish, meter: Meter,
                  fresh: dict):
    """The watch's row as open_watch reads it (None: no watch), and the Lease when this read
    took it (else None). On PostgreSQL, a call that asks nothing of the watch (no wish, no
    budget to reserve) takes the lease in the read itself when the watch is stale, free,
    needs no touch and has no checkEvery interval (whose window may need reads of its own):
    what open_watch's read and _take would do in two statements (_OPEN_TAKE). SQLite has
    no data-modifying WITH, and there the read must not take the write lock."""
    account = meter.account
    if conn.dialect.name != "postgresql" or wish.check_every is not None or wish.budget is not None \
            or (account is not None and account.budget is not None):
        return _OPEN.first(conn, {"owner": owner, "handle": handle}), None
    token = secrets.token_hex(16)
    row = _OPEN_TAKE.first(conn, {"owner": owner, "handle": handle, "now": now, "token": token,
                                  "until": lease_until(svc), "touched": now - TOUCH_EVERY,
                                  "cutoff": _fresh_cutoff(svc, now, fresh.get("window"))})
    return row, (lease_of(row, token) if row is not None and row.taken is not None else None)


def _touch_due(watch, now: dt.datetime) -> bool:
    return watch.last_used_at is None or watch.last_used_at < now - TOUCH_EVERY


def _fresh_or_lease(svc: Services, session, watch, now: dt.datetime, meter: Meter, fresh: dict,
                    answer: Answer | None):
    """Inside open_watch's read: a RefreshResult when the journal answers (fresh, or over the
    budget), Lease when the lease was taken here, None when another refresh holds
    it (the caller waits for it as ensure_fresh does)."""
    cutoff = _fresh_cutoff(svc, now, _window(session, watch, now, fresh))
    if refreshed_since(watch.last_refresh_at, cutoff):
        return RefreshResult(refreshed=False, fresh=True,
                             answer=answer(session, watch.id, None) if answer is not None else None)
    try:
        return _take(svc, session, watch.id, cutoff, meter)
    except ledger.BudgetReached:
        return RefreshResult(refreshed=False, budget_reached=True)


def _window(session, watch, now: dt.datetime, fresh: dict) -> float | None:
    """A call's refresh window in seconds: the caller's `window`, else the watch's checkEvery
    interval (fixed or adaptive: "whoever asks"), else None (REFRESH_WINDOW_SECONDS)."""
    if fresh.get("window") is None and (watch.check_every_minutes is not None or watch.check_auto):
        return interval_for(session, watch, now).total_seconds()
    return fresh.get("window")


def _lock_conflict(error: OperationalError) -> bool:
    """SQLite could not turn a read into a write (busy, or its snapshot is out of date)."""
    return "locked" in str(error.orig) or "busy" in str(error.orig).lower()


def _fresh_cutoff(svc: Services, now: dt.datetime, window: float | None) -> dt.datetime:
    """A refresh at or after this answers a call made `now` (REFRESH_WINDOW_SECONDS unless a
    `window` is given)."""
    window = svc.settings.refresh_window_seconds if window is None else window
    return now - dt.timedelta(seconds=window)


def refreshed_since(last_refresh_at: dt.datetime | None, cutoff: dt.datetime) -> bool:
    return last_refresh_at is not None and last_refresh_at >= cutoff


def _delete_unborn(svc: Services, watch_id: int) -> None:
    # Only while it has no baseline and nobody else took its lease after ours was released.
    with transaction(svc.sessions) as session:
        session.execute(delete(Watch).where(Watch.id == watch_id, Watch.last_refresh_at.is_(None),
                                            Watch.lease_token.is_(None))
                        .execution_options(synchronize_session=False))


def ensure_fresh(svc: Services, watch_id: int, api_key: str, platform: Platform, meter: Meter,
                 *, window: float | None = None, wait_seconds: float = WAIT_SECONDS,
                 schedule: dt.timedelta | None = None, answer: Answer | None = None) -> RefreshResult:
    """Refresh the watch unless a refresh finished inside the window (or while we waited).
    `schedule` (the worker: its default poll interval): the refresh's commit also sets the
    watch's next poll (schedule.next_poll), in the same transaction. `answer`: as for open_watch."""
    fresh_cutoff = _fresh_cutoff(svc, svc.clock(), window)
    deadline = time.monotonic() + wait_seconds
    while True:
        taken = _claim(svc, watch_id, fresh_cutoff, meter)
        if taken is _FRESH:
            return RefreshResult(refreshed=False, fresh=True)
        if taken is not None:
            return _refresh(svc, watch_id, taken.token, api_key, platform, meter, taken.claimed,
                            schedule=schedule, answer=answer)
        if time.monotonic() >= deadline:
            return RefreshResult(refreshed=False)  # answer from the journal; the next poll catches up
        time.sleep(0.05)


_FRESH = object()


def refresh_leased(svc: Services, watch_id: int, lease: Lease, api_key: str, platform: Platform, meter: Meter, *,
                   schedule: dt.timedelta | None = None) -> RefreshResult:
    """The refresh of a watch whose lease the worker's claim took (claims.watch_claim), held
    from that claim's commit on."""
    return _refresh(svc, watch_id, lease.token, api_key, platform, meter, lease.claimed, schedule=schedule)


# What a refresh starts from, returned by the statement that takes its lease (here, or the
# worker's claim): `record` is the watch's complete sweeps (sweeps.record_version), read
# before the first page.
LEASE_STATE = (_W.c.handle, _W.c.watermark, _W.c.top_ids, _W.c.watermark_exclusive, _W.c.last_sequence,
               sweeps.record_version_of(_W).label("record"), known.segment_count(_W).label("segments"))
# The same, for a new watch whose lease its insert took.
_STATE = select(*LEASE_STATE).where(_W.c.id == bindparam("w"))
# A lease can be taken: free (or expired), and the watch not refreshed since the cutoff.
_TAKEABLE = (or_(_W.c.lease_until.is_(None), _W.c.lease_until < bindparam("now")),
             or_(_W.c.last_refresh_at.is_(None), _W.c.last_refresh_at < bindparam("cutoff")))
_TAKEN = _W.update().values(lease_token=bindparam("token"), lease_until=bindparam("until"))
# The lease and the state, in one statement built once. Most calls take it; the others learn
# why with a second read.
_TAKE = Prepared(_TAKEN.where(_W.c.id == bindparam("w"), *_TAKEABLE).returning(_W.c.id, *LEASE_STATE))
# open_watch's read (_OPENED) taking the lease of a watch that needs nothing else first
# (_open_or_take; PostgreSQL): the update as a data-modifying WITH, its row joined to the read
# (`taken` the watch's id when taken, else NULL with the state). The read's row is the watch as
# the statement began; the update rechecks its conditions on the latest row (READ COMMITTED),
# so two callers never both take it.
_TAKEN_IN_READ = _TAKEN.where(*_THE_WATCH, *_TAKEABLE, _W.c.last_used_at >= bindparam("touched"),
                              _W.c.check_every_minutes.is_(None), _W.c.check_auto.is_(False)) \
    .returning(_W.c.id, *LEASE_STATE).cte("taken")
_OPEN_TAKE = Prepared(select(*_OPENED, _TAKEN_IN_READ.c.id.label("taken"),
                             *(_TAKEN_IN_READ.c[c.key] for c in LEASE_STATE))
                      .select_from(_W.outerjoin(_TAKEN_IN_READ, _TAKEN_IN_READ.c.id == _W.c.id))
                      .where(*_THE_WATCH))


# The lease given back (`release`, or a claim the budget refused), if it is still ours.
_UNTAKE = (_W.update().where(_W.c.id == bindparam("w"), _W.c.lease_token == bindparam("token"))
           .values(lease_token=None, lease_until=None))


@dataclass(frozen=True)
class Lease:
    """A refresh's lease on its watch, and the state read with it."""

    token: str
    claimed: _Claimed
    reserved: int = 0  # budget reservations taken with the lease, for the refresh's first call


def lease_of(row, token: str) -> Lease:
    """The Lease a statement returning LEASE_STATE took."""
    state = WatchState(row.watermark, idset.unpack_list(row.top_ids), row.watermark_exclusive)
    return Lease(token, _Claimed(row.handle, state, row.record, row.last_sequence, row.segments, row.top_ids))


def _take(svc: Services, session, watch_id: int, cutoff: dt.datetime, meter: Meter) -> Lease | None:
    """The lease (and under a budget, the first call's reservation) in the caller's
    transaction; None when the watch is leased or was refreshed since `cutoff`. Raises
    BudgetReached after taking the lease: the caller rolls it back (or releases it)."""
    token = secrets.token_hex(16)
    row = _TAKE.first(session.connection(), {"w": watch_id, "now": svc.clock(), "cutoff": cutoff, "token": token,
                                             "until": lease_until(svc)})
    if row is None:
        return None
    account = meter.account
    if account is not None and not account.reserve_in(session):
        # Undone here, whether the caller's transaction commits (PostgreSQL's autocommit reads) or not.
        session.connection().execute(_UNTAKE, {"w": watch_id, "token": token})
        raise ledger.BudgetReached(account.resets_at)
    return dataclasses.replace(lease_of(row, token), reserved=int(account is not None and account.budget is not None))


def _claim(svc: Services, watch_id: int, fresh_cutoff: dt.datetime, meter: Meter):
    """Lease with the watch's lease held; _FRESH when a refresh finished since
    `fresh_cutoff`; None while another refresh holds the lease. One transaction."""
    with transaction(svc.sessions) as session:
        taken = _take(svc, session, watch_id, fresh_cutoff, meter)
        if taken is None:
            last = session.connection().execute(select(_W.c.last_refresh_at).where(_W.c.id == watch_id)).first()
            if last is None:
                raise WatchGone(watch_id)
            return _FRESH if refreshed_since(last.last_refresh_at, fresh_cutoff) else None
    _held(svc, watch_id, taken, meter)
    return taken


def _held(svc: Services, watch_id: int, taken: Lease, meter: Meter) -> None:
    """After the commit of the transaction that took the lease."""
    svc.leases.hold(taken.token, watch_id)
    meter.hold(taken.reserved)


def lease_until(svc: Services) -> dt.datetime:
    return svc.clock() + dt.timedelta(seconds=svc.settings.lease_seconds)


def release(svc: Services, watch_id: int, token: str) -> None:
    svc.leases.drop(token)
    with transaction(svc.sessions) as session:
        session.connection().execute(_UNTAKE, {"w": watch_id, "token": token})


def _refresh(svc: Services, watch_id: int, token: str, api_key: str, platform: Platform, meter: Meter,
             claimed: _Claimed | None = None, *, schedule: dt.timedelta | None = None,
             answer: Answer | None = None) -> RefreshResult:
    share = RefreshMeter(meter)  # this refresh's credits: written by its commit
    try:
        if claimed is None:  # a new watch, its lease taken at its insert
            with svc.reads() as session:  # our lease guards the state: a read, without the write lock
                claimed = lease_of(session.connection().execute(_STATE, {"w": watch_id}).one(), token).claimed
        return _detect_and_commit(svc, watch_id, token, claimed, api_key, platform, share,
                                  schedule=schedule, answer=answer)
    except BaseException:
        # Nothing was written (the commit is one transaction): free the watch at once rather
        # than making every caller wait for the lease to expire.
        release(svc, watch_id, token)
        raise
    finally:
        svc.leases.drop(token)
        _count_unwritten(share, watch_id)


def _count_unwritten(share: RefreshMeter, watch_id: int) -> None:
    """The credits of a refresh that did not commit (a committed one writes them in its
    commit): the owner's and the watch's lines, at once."""
    account, spent = share.account, share.pending()
    if account is None or not spent[0]:
        return
    account.unfinished(watch_id, spent[0], spent)
    share.written(spent)


def _detect_and_commit(svc: Services, watch_id: int, token: str, claimed: _Claimed, api_key: str,
                       platform: Platform, share: RefreshMeter, *, schedule, answer) -> RefreshResult:
    """Pages until detection has its outcome. Each page's accounts are looked up among the
    known ids in a transaction holding the watch's row; the one that reaches the outcome
    also writes it (so a refresh of one page is one transaction after its claim)."""
    settings = svc.settings
    pages: list[Page] = []
    verifies: list[Page] = []
    known_ids: set[str] = set()
    wanted = step(claimed.state, known_ids, pages, verifies, page_cap=settings.page_cap, page_size=settings.page_size)
    while True:
        count = getattr(wanted, "count", None) or settings.page_size
        page = svc.client.fetch_page(api_key, claimed.handle, platform.request_source,
                                     count=count, min_time=wanted.min_time, meter=share)
        if not pages and wanted.min_time is None and _hidden(page):
            raise UpstreamFailure("list_hidden", 200, detail=f"total {page.total}, no accounts")
        (verifies if isinstance(wanted, NeedVerify) else pages).append(
            Page(page.accounts, page.max_cursor, page.min_cursor, page.has_more, page.total,
                 asked_min_time=wanted.min_time, asked_count=count))
        spent = share.pending()
        # Most watches' known ids are read whole, with the watch row: one statement.
        whole = bool(page.accounts) and known.read_whole(claimed.segments)
        # A Core connection: an ORM session costs more than this transaction's statements (_write
        # makes one only when it needs it).
        with core_transaction(svc.sessions) as conn:
            # A plain copy of the columns the rules of the commit read (and change, e.g. a
            # sweep's unfollows number events): no ORM object to load and flush per refresh.
            rows = (_LOCK_WITH_SEGMENTS if whole else _LOCK).rows(conn, {"w": watch_id})
            if not rows:
                raise NoResultFound(f"watch {watch_id} was deleted during its refresh")
            watch = SimpleNamespace(**{name: getattr(rows[0], name) for name in _LOCKED})
            if watch.lease_token != token:
                # Our lease expired and another refresh took over: its result stands, ours is dropped.
                log(logger, logging.WARNING, "refresh lease lost; result discarded", watch_id=watch_id)
                if share.account is not None:
                    share.account.refreshed(conn, watch_id, share.credits, spent)
                result = RefreshResult(refreshed=True)
                outcome = None
            else:
                if page.accounts:
                    known_ids |= known.known_of(conn, watch_id, [a["id"] for a in page.accounts],
                                                segments=claimed.segments,
                                                whole=known.segments_in(rows) if whole else None)
                wanted = step(claimed.state, known_ids, pages, verifies, page_cap=settings.page_cap,
                              page_size=settings.page_size)
                outcome = wanted if isinstance(wanted, Outcome) else None
                if outcome is None:
                    continue  # another page first; this transaction only read
                result = _write(svc, conn, watch, _Commit(outcome, pages, claimed, known_ids, share, spent,
                                                          schedule, answer))
        share.written(spent)
        if outcome is not None:
            _report(svc, watch_id, outcome)
        return result


def _hidden(page) -> bool:
    """A first page that is empty and final while `total` says the account follows
    others: the list is private or hidden (a list of nobody has total 0 or none)."""
    return not page.accounts and not page.has_more and bool(page.total)


@dataclass(frozen=True, slots=True)
class _Commit:
    """What a refresh's commit knows of the refresh (built once, by the page that reached the
    outcome), and what its caller wants of the commit."""

    outcome: Outcome
    pages: list[Page]                 # the pages detection read (not its verifications)
    claimed: _Claimed                 # the watch as the lease was taken
    known_ids: set[str]               # the pages' ids the lookups found known
    share: RefreshMeter               # this refresh's credits
    spent: tuple[int, int]            # share.pending() at this transaction: written by it
    schedule: dt.timedelta | None     # ensure_fresh's `schedule`: the worker's next poll
    answer: Answer | None             # open_watch's `answer`


def _write(svc: Services, conn, watch, commit: _Commit) -> RefreshResult:
    """The outcome written, in the transaction (`conn`) holding the watch's row (`watch`, locked).
    An ORM session joins it only for what needs one: a sweep record's rows (free_unfollows,
    not from a safe-mode refresh, whose cursors proved nothing) and the caller's `answer`."""
    swept = commit.claimed.record is not None and not commit.outcome.safe_mode
    with svc.sessions(bind=conn) if swept or commit.answer is not None else nullcontext() as session:
        return _write_outcome(svc, conn, session, watch, commit, swept)


def _write_outcome(svc: Services, conn, session, watch, commit: _Commit, swept: bool) -> RefreshResult:
    """The commit's writes: the known ids, the journal and its outbox, a sweep's unfollows, the
    journal's retention, the watch's row (_saved_row, and the worker's next poll) and, last,
    the credits, riding with the caller's answer."""
    outcome, claimed, share = commit.outcome, commit.claimed, commit.share
    clock = svc.clock()
    now = clock.replace(microsecond=clock.microsecond // 1000 * 1000)  # what `detectedAt` shows is what `since` compares
    watch_id = watch.id
    # Only a sweep's unfollows forget ids, and they add to the journal: with its number
    # unchanged since the claim, the ids our lookups found known still are, and only the
    # others need writing (most refreshes: none).
    unchanged = watch.last_sequence == claimed.sequence
    known.remember(conn, watch_id, [i for i in outcome.seen_ids if i not in commit.known_ids] if unchanged
                   else outcome.seen_ids)
    watch.last_sequence = _journal(conn, watch_id, watch.last_sequence, outcome.new_follows, now)
    # Unfollows among the pages just read, for watches with unfollow listeners (no extra request).
    unfollows = sweeps.free_unfollows(session, watch, claimed.record, commit.pages, now) if swept else 0
    values = _saved_row(watch, commit, now)
    if watch.last_sequence != claimed.sequence or _new_day(watch.last_refresh_at, now):
        _prune(svc, conn, watch)
    scheduled = commit.schedule is not None and watch.next_poll_at is not None
    if scheduled:  # the worker's next poll (claims.schedule_next's rule), one write less
        values["next_poll_at"] = next_poll(conn, watch, clock, commit.schedule, refreshed=True)
    if swept:
        session.flush()  # a sweep's unfollows (ORM rows) first, as before
    save = (_SAVE_BASELINE if outcome.baseline else _SAVE,
            {"saved": watch_id, **{f"v_{k}": v for k, v in values.items()}})
    if outcome.baseline or share.account is None:
        save[0].run(conn, save[1])  # before the answer: a baseline's answer shows the samples it stores
        save = None
    # Last: on PostgreSQL the owner's ledger row stays locked until the commit. The row's write
    # goes with it, and both ride with the answer's first read (one statement, one round trip
    # on PostgreSQL; driver_sql.Writes): the answer reads only the journal, which they leave as is.
    writes = share.account.refresh_writes(conn, watch_id, share.credits, commit.spent, also=save) \
        if share.account is not None else None
    items = commit.answer(session, watch_id, writes) if commit.answer is not None else None
    if writes is not None:
        writes.run(conn)  # unless the answer's read carried them
    return RefreshResult(refreshed=True, new_events=len(outcome.new_follows), truncated=outcome.truncated,
                         unfollows=unfollows, scheduled=scheduled, answer=items)


def _saved_row(watch, commit: _Commit, now: dt.datetime) -> dict:
    """The watch's row as the commit leaves it (_SAVED's columns, and a baseline's samples),
    from the locked row after the journal's and the unfollows' numbers: its lease given back."""
    outcome, claimed = commit.outcome, commit.claimed
    values = {"last_sequence": watch.last_sequence, "watermark": outcome.state.watermark,
              "watermark_exclusive": outcome.state.exclusive,
              "detection_mode": outcome.safe_mode.value if outcome.safe_mode else None,
              # Capped by detection.TOP_IDS_CAP; most refreshes leave it as it was (nothing to pack).
              "top_ids": claimed.top_ids if outcome.state.top_ids == claimed.state.top_ids
              else idset.pack_list(outcome.state.top_ids),
              "last_refresh_at": now, "lease_token": None, "lease_until": None,
              "truncations": watch.truncations + 1 if outcome.truncated else watch.truncations,
              "next_poll_at": watch.next_poll_at}
    if outcome.baseline:
        # A few accounts, whatever the page size or an upstream ignoring `count` (issue: bounds).
        values["samples"] = pack_samples(commit.pages[0].accounts)
    return values


def _report(svc: Services, watch_id: int, outcome: Outcome) -> None:
    """Metrics and warnings of a committed outcome."""
    if outcome.new_follows:
        EVENTS_DETECTED.inc(len(outcome.new_follows))
    if outcome.safe_mode:
        DETECTION_SAFE_MODE.labels(outcome.safe_mode.value).inc()
        log(logger, logging.WARNING, "upstream deviated from its documented paging: detection ran in safe mode",
            watch_id=watch_id, reason=outcome.safe_mode.value)
    if outcome.truncated:
        DETECTION_TRUNCATED.inc()
        log(logger, logging.WARNING, "burst larger than the page cap: only the newest follows were emitted",
            watch_id=watch_id, emitted=len(outcome.new_follows), page_cap=svc.settings.page_cap)


# The watch row under its lock at the commit: what the rules of the commit read (and, for
# a lookup that reads them whole, its known-id segments: known.with_segments).
_LOCKED = ("id", "owner_hash", "lease_token", "last_sequence", "truncations", "next_poll_at", "last_refresh_at",
           "check_every_minutes", "check_auto", "daily_budget")
_LOCK = select(*(_W.c[name] for name in _LOCKED)).where(_W.c.id == bindparam("w")).with_for_update()
_LOCK, _LOCK_WITH_SEGMENTS = Prepared(_LOCK), Prepared(known.with_segments(_LOCK, _W).with_for_update(of=_W))
# The watch row written by the commit, built once (with the samples: a baseline's).
_SAVED = ("last_sequence", "watermark", "watermark_exclusive", "detection_mode", "top_ids", "last_refresh_at",
          "lease_token", "lease_until", "truncations", "next_poll_at")


def _save(columns: tuple[str, ...]) -> Prepared:
    # `saved`, not `w`: it rides with the answer's read (driver_sql.Writes), whose parameters are its own.
    return Prepared(_W.update().where(_W.c.id == bindparam("saved")).values({c: bindparam(f"v_{c}") for c in columns}))


_SAVE, _SAVE_BASELINE = _save(_SAVED), _save((*_SAVED, "samples"))

_E, _D = Event.__table__, Delivery.__table__
# Core statements built once: the journal and the outbox of a refresh's new follows.
_ADD_EVENTS = _E.insert().returning(_E.c.id, sort_by_parameter_order=True)
_ADD_DELIVERIES = _D.insert()


def _journal(conn, watch_id: int, sequence: int, new_follows: list[dict], now: dt.datetime) -> int:
    """The new follows, oldest first (the newest gets the highest number), and in the same
    transaction the outbox: a delivery to each subscription whose filters keep the account
    (the journal keeps all). Two statements whatever their number. Returns the last sequence."""
    if not new_follows:
        return sequence
    oldest_first = list(reversed(new_follows))
    ids = conn.execute(_ADD_EVENTS, [
        {"watch_id": watch_id, "sequence": sequence + n, "account_id": account["id"], "detected_at": now,
         "payload": json.dumps(account), "event": NEW_FOLLOWING}
        for n, account in enumerate(oldest_first, 1)]).scalars().all()
    subscriptions = [(sub_id, Filters.from_json(stored)) for sub_id, stored in conn.execute(
        select(Subscription.id, Subscription.filters).where(Subscription.watch_id == watch_id,
                                                           Subscription.event == NEW_FOLLOWING))]
    deliveries = [{"id": secrets.token_hex(12), "subscription_id": sub_id, "event_id": event_id,
                   "next_attempt_at": now}
                  for event_id, account in zip(ids, oldest_first)
                  for sub_id, filters in subscriptions if filters.keep(account)]
    if deliveries:
        conn.execute(_ADD_DELIVERIES, deliveries)
    return sequence + len(oldest_first)


# Journal retention, built once (`_prune`).
_PRUNE = _E.delete().where(
    _E.c.watch_id == bindparam("w"),
    or_(_E.c.detected_at < bindparam("too_old"), _E.c.sequence <= bindparam("beyond")),
    ~exists().where(_D.c.event_id == _E.c.id, _D.c.status == "pending"))


def _new_day(last_refresh_at: dt.datetime | None, now: dt.datetime) -> bool:
    return last_refresh_at is None or last_refresh_at.date() != now.date()


def _prune(svc: Services, conn, watch: Watch) -> None:
    """Journal retention: events older than the retention period, or beyond the newest
    `journal_max_events`, go, unless a delivery for them is still pending. Run by a refresh
    whose journal grew (the count bound) and by the first of each UTC day (the age bound:
    an event may outlive the period by up to a day), not by every refresh: most find nothing."""
    settings = svc.settings
    too_old = svc.clock() - dt.timedelta(days=settings.journal_retention_days)
    conn.execute(_PRUNE, {"w": watch.id, "too_old": too_old,
                          "beyond": watch.last_sequence - settings.journal_max_events})
