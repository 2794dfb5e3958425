"""The imperative shell around `integration.detection`: state from the database, pages
from the upstream, the journal and the outbox written back in one transaction.

Coalescing: a refresh holds a lease on its watch row (a conditional UPDATE, atomic on
SQLite and PostgreSQL). Callers inside the refresh window, and callers that arrive
while a refresh runs, wait for it and read the journal instead of paying again.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import time
from dataclasses import dataclass
from types import SimpleNamespace

from sqlalchemy import bindparam, delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import load_only

from integration import idset, known, ledger, sweeps
from integration.db import transaction
from integration.detection import NeedVerify, Outcome, Page, WatchState, step
from integration.models import Delivery, Event, Subscription, Watch
from integration.errors import UpstreamFailure
from integration.filters import Filters
from integration.items import NEW_FOLLOWING, pack_samples
from integration.observability import DETECTION_SAFE_MODE, DETECTION_TRUNCATED, EVENTS_DETECTED, log
from integration.platforms import Platform
from integration.schedule import Wish, interval_for, next_poll
from integration.services import Services
from integration.upstream import Meter

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


@dataclass(frozen=True)
class _Claimed:
    """What a refresh needs of its watch, read in the transaction that took its lease."""

    handle: str
    state: WatchState
    record: int | None  # sweeps.record_version, before the first page
    sequence: int       # the journal's last number: unchanged at the commit, no id was forgotten meanwhile


class WatchGone(Exception):
    """The watch was deleted while we waited for it (its first refresh failed, or it was idle)."""


TOUCH_EVERY = dt.timedelta(hours=1)  # `last_used_at` is written at most this often per watch
# What a trigger call reads of its watch (not the baseline and detection state it does not need).
_SCHEDULE_COLUMNS = load_only(Watch.id, Watch.owner_hash, Watch.last_used_at, Watch.check_every_minutes,
                              Watch.check_auto, Watch.daily_budget, Watch.last_refresh_at)


def open_watch(svc: Services, owner: str, handle: str, api_key: str, platform: Platform, meter: Meter,
               wish: Wish = Wish(), **fresh) -> tuple[int, RefreshResult]:
    """The watch for (owner, handle), refreshed as `ensure_fresh` does, and marked used.

    A new watch is inserted holding its lease (so concurrent callers wait for its baseline
    instead of paying again) and deleted if that first refresh fails: a key the upstream
    refused leaves no row behind. The caller's `wish` (checkEvery, budget) is stored on the
    watch; a `checkEvery` makes the refresh window that long, whoever asks. Over the daily
    budget an existing watch is answered from its journal (a new one raises BudgetReached:
    it has no journal yet)."""
    for _ in range(3):
        now = svc.clock()
        with svc.reads() as session:  # no write lock: most calls only read (SQLite)
            watch = session.scalar(select(Watch).options(_SCHEDULE_COLUMNS)
                                   .where(Watch.owner_hash == owner, Watch.handle == handle))
            changes = wish.changes(watch) if watch is not None else {}
        if watch is None:
            token = secrets.token_hex(16)
            try:
                with transaction(svc.sessions) as session:
                    watch = Watch(owner_hash=owner, handle=handle, last_used_at=now, lease_token=token,
                                  lease_until=_lease_until(svc), check_auto=False)
                    for name, value in wish.changes(watch).items():
                        setattr(watch, name, value)
                    session.add(watch)
                    session.flush()
                    watch_id = watch.id
            except IntegrityError:
                continue  # created concurrently: wait for its refresh on the next turn
            svc.leases.hold(token, watch_id)
            try:
                return watch_id, _refresh(svc, watch_id, token, api_key, platform, meter)
            except BaseException:
                _delete_unborn(svc, watch_id)
                raise
        watch_id, used = watch.id, watch.last_used_at
        if used is None or used < now - TOUCH_EVERY:
            changes["last_used_at"] = now
        if changes:
            with transaction(svc.sessions) as session:
                session.execute(update(Watch).where(Watch.id == watch_id).values(**changes)
                                .execution_options(synchronize_session=False))
        for name, value in changes.items():  # the row as it is now (a detached copy)
            setattr(watch, name, value)
        if "window" not in fresh and (watch.check_every_minutes is not None or watch.check_auto):
            with svc.reads() as session:
                fresh["window"] = interval_for(session, watch, now).total_seconds()
        if _refreshed_since(watch.last_refresh_at, _fresh_cutoff(svc, now, fresh.get("window"))):
            # Refreshed inside the window as of the read above: the journal answers, without the
            # claim's write transaction (ensure_fresh would find the same and answer the same).
            return watch_id, RefreshResult(refreshed=False, fresh=True)
        try:
            return watch_id, ensure_fresh(svc, watch_id, api_key, platform, meter, **fresh)
        except WatchGone:
            continue
        except ledger.BudgetReached:
            return watch_id, RefreshResult(refreshed=False, budget_reached=True)
    raise RuntimeError("the watch kept disappearing")


def _fresh_cutoff(svc: Services, now: dt.datetime, window: float | None) -> dt.datetime:
    """A refresh at or after this answers a call made `now` (REFRESH_WINDOW_SECONDS unless a
    `window` is given)."""
    window = svc.settings.refresh_window_seconds if window is None else window
    return now - dt.timedelta(seconds=window)


def _refreshed_since(last_refresh_at: dt.datetime | None, cutoff: dt.datetime) -> bool:
    return last_refresh_at is not None and last_refresh_at >= cutoff


def _delete_unborn(svc: Services, watch_id: int) -> None:
    # Only while it has no baseline and nobody else took its lease after ours was released.
    with transaction(svc.sessions) as session:
        session.execute(delete(Watch).where(Watch.id == watch_id, Watch.last_refresh_at.is_(None),
                                            Watch.lease_token.is_(None))
                        .execution_options(synchronize_session=False))


def ensure_fresh(svc: Services, watch_id: int, api_key: str, platform: Platform, meter: Meter,
                 *, window: float | None = None, wait_seconds: float = WAIT_SECONDS,
                 schedule: dt.timedelta | None = None) -> RefreshResult:
    """Refresh the watch unless a refresh finished inside the window (or while we waited).
    `schedule` (the worker: its default poll interval): the refresh's commit also sets the
    watch's next poll (schedule.next_poll), in the same transaction."""
    fresh_cutoff = _fresh_cutoff(svc, svc.clock(), window)
    deadline = time.monotonic() + wait_seconds
    while True:
        claimed = _claim(svc, watch_id, fresh_cutoff)
        if claimed is _FRESH:
            return RefreshResult(refreshed=False, fresh=True)
        if claimed is not None:
            token, state = claimed
            return _refresh(svc, watch_id, token, api_key, platform, meter, state, schedule=schedule)
        if time.monotonic() >= deadline:
            return RefreshResult(refreshed=False)  # answer from the journal; the next poll catches up
        time.sleep(0.05)


_FRESH = object()


_W = Watch.__table__
# The lease and the state a refresh reads, in one statement built once: free (or expired) and
# not refreshed since the cutoff. Most calls take it; the others learn why with a second read.
_TAKE = (_W.update()
         .where(_W.c.id == bindparam("w"), or_(_W.c.lease_until.is_(None), _W.c.lease_until < bindparam("now")),
                or_(_W.c.last_refresh_at.is_(None), _W.c.last_refresh_at < bindparam("cutoff")))
         .values(lease_token=bindparam("token"), lease_until=bindparam("until"))
         .returning(_W.c.id, _W.c.handle, _W.c.watermark, _W.c.top_ids, _W.c.watermark_exclusive, _W.c.last_sequence))


def _claim(svc: Services, watch_id: int, fresh_cutoff: dt.datetime):
    """(token, _Claimed) with the watch's lease taken; _FRESH when a refresh finished since
    `fresh_cutoff`; None while another refresh holds the lease. One transaction."""
    token = secrets.token_hex(16)
    with transaction(svc.sessions) as session:
        conn = session.connection()
        row = conn.execute(_TAKE, {"w": watch_id, "now": svc.clock(), "cutoff": fresh_cutoff, "token": token,
                                   "until": _lease_until(svc)}).first()
        if row is None:
            last = conn.execute(select(_W.c.last_refresh_at).where(_W.c.id == watch_id)).first()
            if last is None:
                raise WatchGone(watch_id)
            return _FRESH if _refreshed_since(last.last_refresh_at, fresh_cutoff) else None
        claimed = _claimed(session, row)
    svc.leases.hold(token, watch_id)
    return token, claimed


def _claimed(session, watch) -> _Claimed:
    state = WatchState(watch.watermark, idset.unpack_list(watch.top_ids), watch.watermark_exclusive)
    return _Claimed(watch.handle, state, sweeps.record_version(session, watch.id), watch.last_sequence)


def _lease_until(svc: Services) -> dt.datetime:
    return svc.clock() + dt.timedelta(seconds=svc.settings.lease_seconds)


def release(svc: Services, watch_id: int, token: str) -> None:
    svc.leases.drop(token)
    with transaction(svc.sessions) as session:
        session.execute(update(Watch).where(Watch.id == watch_id, Watch.lease_token == token)
                        .values(lease_token=None, lease_until=None).execution_options(synchronize_session=False))


def _refresh(svc: Services, watch_id: int, token: str, api_key: str, platform: Platform, meter: Meter,
             claimed: _Claimed | None = None, *, schedule: dt.timedelta | None = None) -> RefreshResult:
    before, done = meter.credits, False
    try:
        if claimed is None:  # a new watch, its lease taken at its insert
            with svc.reads() as session:  # our lease guards the state: a read, without the write lock
                claimed = _claimed(session, session.get(Watch, watch_id))
        outcome, pages, known_ids = _detect(svc, watch_id, claimed.handle, claimed.state, api_key, platform, meter)
        result = _commit(svc, watch_id, token, outcome, pages, claimed, known_ids, meter=meter,
                         credits=meter.credits - before, schedule=schedule)
        done = True
        return result
    except BaseException:
        # Nothing was written (the commit is one transaction): free the watch at once rather
        # than making every caller wait for the lease to expire.
        release(svc, watch_id, token)
        raise
    finally:
        svc.leases.drop(token)
        if not done:
            _count_unfinished(meter, watch_id, meter.credits - before)


def _count_unfinished(meter: Meter, watch_id: int, credits: int) -> None:
    """The watch's line of the ledger for a refresh that did not commit (a committed one
    writes it in its commit): the credits its pages cost (the owner's were counted call by call)."""
    account = meter.account
    if account is None or not credits:
        return
    try:
        ledger.add_watch(account.sessions, watch_id, account.day, credits=credits, refreshes=0)
    except IntegrityError:
        pass  # the watch was deleted meanwhile; the owner's credits are counted all the same


def _detect(svc, watch_id, handle, state, api_key, platform, meter) -> tuple[Outcome, list[Page], set[str]]:
    """The outcome, the pages read, and which of their accounts the watch knew."""
    settings = svc.settings
    pages: list[Page] = []
    verifies: list[Page] = []
    known: set[str] = set()
    while True:
        wanted = step(state, known, pages, verifies, page_cap=settings.page_cap, page_size=settings.page_size)
        if isinstance(wanted, Outcome):
            return wanted, pages, known
        count = getattr(wanted, "count", None) or settings.page_size
        page = svc.client.fetch_page(api_key, handle, platform.request_source,
                                     count=count, min_time=wanted.min_time, meter=meter)
        if not pages and wanted.min_time is None and _hidden(page):
            raise UpstreamFailure("list_hidden", 200, detail=f"total {page.total}, no accounts")
        known |= _known_among(svc, watch_id, [a["id"] for a in page.accounts])
        as_page = Page(page.accounts, page.max_cursor, page.min_cursor, page.has_more, page.total,
                       asked_min_time=wanted.min_time, asked_count=count)
        (verifies if isinstance(wanted, NeedVerify) else pages).append(as_page)


def _hidden(page) -> bool:
    """A first page that is empty and final while `total` says the account follows
    others: the list is private or hidden (a list of nobody has total 0 or none)."""
    return not page.accounts and not page.has_more and bool(page.total)


def _known_among(svc: Services, watch_id: int, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    with svc.reads() as session:
        return known.known_of(session, watch_id, ids)


def _commit(svc: Services, watch_id: int, token: str, outcome: Outcome, pages: list[Page],
            claimed: _Claimed, known_ids: set[str], *, meter: Meter | None = None, credits: int = 0,
            schedule: dt.timedelta | None = None) -> RefreshResult:
    clock = svc.clock()
    now = clock.replace(microsecond=clock.microsecond // 1000 * 1000)  # what `detectedAt` shows is what `since` compares
    account = meter.account if meter is not None else None
    with transaction(svc.sessions) as session:
        conn = session.connection()
        # A plain copy of the columns the rules below read (and change, e.g. a sweep's
        # unfollows number events): no ORM object to load and flush on every refresh.
        watch = SimpleNamespace(**conn.execute(_LOCK, {"w": watch_id}).one()._mapping)
        if watch.lease_token != token:
            # Our lease expired and another refresh took over: its result stands, ours is dropped.
            log(logger, logging.WARNING, "refresh lease lost; result discarded", watch_id=watch_id)
            if account is not None:
                account.refreshed(session, watch_id, credits)
            return RefreshResult(refreshed=True)
        # Under the watch row's lock, taken above. Only a sweep's unfollows forget ids, and they
        # add to the journal: with its number unchanged since the claim, the ids our lookups
        # found known still are, and only the others need writing (most refreshes: none).
        unchanged = watch.last_sequence == claimed.sequence
        known.remember(session, watch_id, [i for i in outcome.seen_ids if i not in known_ids] if unchanged
                       else outcome.seen_ids)
        watch.last_sequence = _journal(session, watch_id, watch.last_sequence, outcome.new_follows, now)
        # Unfollows among the pages just read, for watches with unfollow listeners (no extra request);
        # not from a safe-mode refresh, whose cursors proved nothing.
        unfollows = 0 if outcome.safe_mode else sweeps.free_unfollows(session, watch, claimed.record, pages, now)
        values = {"last_sequence": watch.last_sequence, "watermark": outcome.state.watermark,
                  "watermark_exclusive": outcome.state.exclusive,
                  "detection_mode": outcome.safe_mode.value if outcome.safe_mode else None,
                  "top_ids": idset.pack_list(outcome.state.top_ids),  # capped by detection.TOP_IDS_CAP
                  "last_refresh_at": now, "lease_token": None, "lease_until": None}
        if outcome.baseline:
            # A few accounts, whatever the page size or an upstream ignoring `count` (issue: bounds).
            values["samples"] = pack_samples(pages[0].accounts)
        if outcome.truncated:
            values["truncations"] = watch.truncations + 1
        _prune(svc, session, watch)
        scheduled = schedule is not None and watch.next_poll_at is not None
        if scheduled:  # the worker's next poll (claims.schedule_next's rule), one write less
            values["next_poll_at"] = next_poll(session, watch, clock, schedule, refreshed=True)
        session.flush()  # a sweep's unfollows (ORM rows) first, as before
        conn.execute(_W.update().where(_W.c.id == watch_id).values(**values))
        if account is not None:
            # Last: on PostgreSQL the owner's ledger row stays locked until the commit.
            account.refreshed(session, watch_id, credits)
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
    return RefreshResult(refreshed=True, new_events=len(outcome.new_follows), truncated=outcome.truncated,
                         unfollows=unfollows, scheduled=scheduled)


# The watch row under its lock at the commit: what the rules of the commit read.
_LOCK = (select(_W.c.id, _W.c.owner_hash, _W.c.lease_token, _W.c.last_sequence, _W.c.truncations,
                _W.c.next_poll_at, _W.c.last_refresh_at, _W.c.check_every_minutes, _W.c.check_auto,
                _W.c.daily_budget)
         .where(_W.c.id == bindparam("w")).with_for_update())
_E, _D = Event.__table__, Delivery.__table__
# Core statements built once: the journal and the outbox of a refresh's new follows.
_ADD_EVENTS = _E.insert().returning(_E.c.id, sort_by_parameter_order=True)
_ADD_DELIVERIES = _D.insert()


def _journal(session, watch_id: int, sequence: int, new_follows: list[dict], now: dt.datetime) -> int:
    """The new follows, oldest first (the newest gets the highest number), and in the same
    transaction the outbox: a delivery to each subscription whose filters keep the account
    (the journal keeps all). Two statements whatever their number. Returns the last sequence."""
    if not new_follows:
        return sequence
    oldest_first = list(reversed(new_follows))
    conn = session.connection()
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


# Journal retention, built once (a refresh runs it every time).
_PRUNE = _E.delete().where(
    _E.c.watch_id == bindparam("w"),
    or_(_E.c.detected_at < bindparam("too_old"), _E.c.sequence <= bindparam("beyond")),
    ~exists().where(_D.c.event_id == _E.c.id, _D.c.status == "pending"))


def _prune(svc: Services, session, watch: Watch) -> None:
    """Journal retention: events older than the retention period, or beyond the newest
    `journal_max_events`, go, unless a delivery for them is still pending."""
    settings = svc.settings
    too_old = svc.clock() - dt.timedelta(days=settings.journal_retention_days)
    session.connection().execute(_PRUNE, {"w": watch.id, "too_old": too_old,
                                          "beyond": watch.last_sequence - settings.journal_max_events})
