"""Every statement the worker runs: claiming due watches and deliveries, writing outcomes.

Both claims are one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n)
RETURNING`: on PostgreSQL concurrent workers skip each other's rows; on SQLite the
statement runs under the write lock taken at BEGIN IMMEDIATE, so it is atomic too.

- A due watch is claimed by moving its `next_poll_at` one interval ahead, so no other
  worker takes it within the interval (a refresh is also guarded by the watch's lease).
- A due delivery is claimed by setting `claimed_until`; a worker killed mid-send loses the
  claim when it expires, and another sends again with the same `webhook-id`.
- Deliveries are claimed round-robin across owners: among the oldest due deliveries
  (limit x SCAN_FACTOR of them) of owners not at their cap in this worker, each owner's are
  ranked 1, 2, ... (a window function, on SQLite and PostgreSQL alike) and the claim takes
  every owner's first before anyone's second, at most `per_owner` each. An owner with
  thousands of old due deliveries (or slow receivers) gets at most `per_owner` slots, is then
  at its cap and left out of the next claim: another owner waits at most one claim cycle.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets

from sqlalchemy import String, bindparam, case, cast, delete, exists, func, literal, or_, select, update
from sqlalchemy.orm import load_only

from integration import items, subscriptions, watches
from integration.db import transaction
from integration.jobs import CLAIMABLE, DeliveryJob, DeliveryOutcome, DeliveryStatus, Outcome, RefreshJob, WatchStatus
from integration.models import Delivery, Event, Subscription, Watch
from integration.platforms import Platform
from integration.schedule import interval_for, next_poll
from integration.services import Services

# What scheduling reads of a watch (schedule.interval_for): not its baseline and detection state.
_SCHEDULE = load_only(Watch.id, Watch.owner_hash, Watch.check_every_minutes, Watch.check_auto, Watch.daily_budget,
                      Watch.next_poll_at, Watch.last_refresh_at)
SCAN_FACTOR = 8  # candidates per free slot: enough to see several owners, bounded work per claim
_table = Delivery.__table__
# One statement for every outcome (executemany); only a delivery still pending is changed.
_RECORD = (_table.update()
           .where(_table.c.id == bindparam("d_id"), _table.c.status == DeliveryStatus.PENDING)
           .values(status=bindparam("d_status"), attempts=bindparam("d_attempts"),
                   last_status=bindparam("d_last_status"), last_error=bindparam("d_last_error"),
                   next_attempt_at=bindparam("d_next"), delivered_at=bindparam("d_delivered_at"),
                   claimed_until=None))

# ---------------------------------------------------------------- watches


def watch_claim(now: dt.datetime, limit: int, interval: dt.timedelta, batch: str, lease_until: dt.datetime):
    """The claim of up to `limit` due watches, oldest due first (fair: none waits behind a
    younger one). An index walk of `ix_watches_next_poll` from its start, stopping after
    `limit` claimable rows: flat as the table grows (bench/bench_claims.py, EXPLAIN at 1k,
    100k and 1M watches), since a watch that is not polled (paused, no subscription left)
    has no `next_poll_at` and is not in the walk.

    The same statement takes each free watch's refresh lease (token `batch`-id, until
    `lease_until`) and returns the state its refresh starts from (watches.LEASE_STATE), so
    a refresh needs no transaction of its own to begin. A watch leased by a trigger call's
    refresh is claimed without its lease (`leased` false): that refresh is its poll."""
    has_subscription = exists().where(Subscription.watch_id == Watch.id)
    due = (select(Watch.id)
           .where(Watch.next_poll_at <= now, Watch.status.in_(CLAIMABLE), Watch.api_key_enc.is_not(None),
                  has_subscription)
           .order_by(Watch.next_poll_at).limit(limit)
           .with_for_update(skip_locked=True, of=Watch))
    free = or_(Watch.lease_until.is_(None), Watch.lease_until < now)
    token = literal(batch) + "-" + cast(Watch.id, String)
    return (update(Watch).where(Watch.id.in_(due.scalar_subquery()))
            .values(next_poll_at=now + interval,
                    lease_token=case((free, token), else_=Watch.lease_token),
                    lease_until=case((free, lease_until), else_=Watch.lease_until))
            .returning(Watch.id, Watch.api_key_enc, Watch.status, Watch.status_reason, Watch.owner_hash,
                       Watch.daily_budget, Watch.check_every_minutes, Watch.check_auto,
                       (Watch.lease_token == token).label("leased"), Watch.lease_token, Watch.last_refresh_at,
                       *watches.LEASE_STATE)
            .execution_options(synchronize_session=False))


def claim_watches(svc: Services, now: dt.datetime, limit: int) -> list[RefreshJob]:
    if limit <= 0:
        return []
    batch = secrets.token_hex(12)
    with transaction(svc.sessions) as session:
        rows = session.execute(watch_claim(now, limit, poll_interval(svc), batch, watches.lease_until(svc))).all()
        if not rows:
            return []
        # requestSource follows the platform the user subscribed from (the oldest one if mixed).
        # Crowds ("followed by many") subscribed on a watch are evaluated after its refresh.
        platforms: dict[int, Platform] = {}
        crowded: set[int] = set()
        for watch_id, platform, crowd_id in session.execute(
                select(Subscription.watch_id, Subscription.platform, Subscription.crowd_id)
                .where(Subscription.watch_id.in_([r.id for r in rows]))
                .order_by(Subscription.created_at)):
            platforms.setdefault(watch_id, Platform(platform))
            if crowd_id is not None:
                crowded.add(watch_id)
    jobs = [RefreshJob(row.id, row.api_key_enc, platforms.get(row.id, Platform.API),
                       row.status == WatchStatus.ACTIVE and row.status_reason is None, row.owner_hash,
                       row.daily_budget, row.check_every_minutes, bool(row.check_auto), row.id in crowded,
                       lease=watches.lease_of(row, row.lease_token) if row.leased else None,
                       last_refresh_at=row.last_refresh_at)
            for row in rows]
    for job in jobs:  # held (renewed while they run) from the claim's commit on
        if job.lease is not None:
            svc.leases.hold(job.lease.token, job.watch_id)
    return jobs


def watch_interval(svc: Services, watch_id: int, now: dt.datetime) -> dt.timedelta | None:
    """The watch's checkEvery interval (fixed or adaptive); None: POLL_INTERVAL_SECONDS applies."""
    with svc.reads() as session:
        watch = session.get(Watch, watch_id, options=[_SCHEDULE])
        return interval_for(session, watch, now) if watch is not None else None


def schedule_next(svc: Services, watch_id: int, now: dt.datetime, *, refreshed: bool) -> None:
    """After the worker's turn, when its refresh's commit did not already (schedule.next_poll)."""
    with transaction(svc.sessions) as session:
        watch = session.get(Watch, watch_id, options=[_SCHEDULE])
        if watch is None or watch.next_poll_at is None:
            return
        watch.next_poll_at = next_poll(session, watch, now, poll_interval(svc), refreshed=refreshed)


def poll_interval(svc: Services) -> dt.timedelta:
    return dt.timedelta(seconds=svc.settings.poll_interval_seconds)


def job_interval(svc: Services, job: RefreshJob, now: dt.datetime) -> dt.timedelta | None:
    """`watch_interval` from the columns the claim returned: a read only for an adaptive
    ("auto") watch, whose interval depends on its peers' recent follows."""
    if job.check_auto and job.check_every_minutes is None:
        return watch_interval(svc, job.watch_id, now)
    return dt.timedelta(minutes=job.check_every_minutes) if job.check_every_minutes is not None else None


def change_watch(svc: Services, watch_id: int, key_enc: str, **values) -> None:
    # Only if the key is still the one we used: a user who reconnected meanwhile wins.
    with transaction(svc.sessions) as session:
        session.execute(update(Watch).where(Watch.id == watch_id, Watch.api_key_enc == key_enc)
                        .values(**values).execution_options(synchronize_session=False))


# ---------------------------------------------------------------- deliveries


def _due(now: dt.datetime) -> tuple:
    return (Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now,
            or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now))


def claim_deliveries(svc: Services, now: dt.datetime, limit: int, *, claim_seconds: float, per_owner: int,
                     skip_owners: frozenset[str] = frozenset()) -> list[DeliveryJob]:
    """Claim up to `limit` due deliveries, round-robin across owners, at most `per_owner`
    each, none of `skip_owners` (owners whose sends are at their cap in this worker)."""
    if limit <= 0:
        return []
    # The oldest due deliveries of owners not at their cap (an index walk, no sort of the
    # whole backlog), then round-robin among them: every owner's first before anyone's second.
    candidates = (select(Delivery.id.label("id"), Delivery.next_attempt_at.label("at"),
                         Subscription.owner_hash.label("owner"))
                  .join(Subscription, Subscription.id == Delivery.subscription_id)
                  .where(*_due(now)))
    if skip_owners:
        candidates = candidates.where(Subscription.owner_hash.not_in(sorted(skip_owners)))
    candidates = candidates.order_by(Delivery.next_attempt_at).limit(limit * SCAN_FACTOR).subquery()
    rank = func.row_number().over(partition_by=candidates.c.owner, order_by=(candidates.c.at, candidates.c.id))
    ranked = select(candidates.c.id, candidates.c.at, rank.label("rank")).subquery()
    picked = (select(ranked.c.id).where(ranked.c.rank <= max(1, per_owner))
              .order_by(ranked.c.rank, ranked.c.at).limit(limit))
    # FOR UPDATE cannot sit beside a window function: lock in a query of its own. The UPDATE
    # repeats the claim test, which PostgreSQL re-checks on a row another worker just claimed
    # (only that column: with the status and due time too, SQLite would walk the due index).
    locked = select(Delivery.id).where(Delivery.id.in_(picked.scalar_subquery())).with_for_update(skip_locked=True)
    with transaction(svc.sessions) as session:
        ids = session.scalars(
            update(Delivery).where(Delivery.id.in_(locked.scalar_subquery()), _due(now)[2])
            .values(claimed_until=now + dt.timedelta(seconds=claim_seconds))
            .returning(Delivery.id).execution_options(synchronize_session=False)).all()
        if not ids:
            return []
        rows = session.execute(
            select(Delivery.id, Delivery.attempts, Subscription.id, Subscription.owner_hash,
                   Subscription.target_url, Subscription.secret_enc, Watch.handle, Event)
            .join(Subscription, Subscription.id == Delivery.subscription_id)
            .join(Event, Event.id == Delivery.event_id)
            .join(Watch, Watch.id == Event.watch_id)
            .where(Delivery.id.in_(ids))).all()
    # The body is the trigger item of the same event, compact JSON.
    return [DeliveryJob(d_id, attempts, sub_id, owner, url, secret_enc,
                        json.dumps(items.event_item(handle, event), separators=(",", ":")).encode())
            for d_id, attempts, sub_id, owner, url, secret_enc, handle, event in rows]


def release_deliveries(svc: Services, not_before: dict[str, dt.datetime | None]) -> None:
    """Give back claimed deliveries that were not sent (their owner or host was at its cap):
    not an attempt, so nothing but the claim (and, for a host's rate, the due time) changes."""
    if not not_before:
        return
    with transaction(svc.sessions) as session:
        for d_id, when in not_before.items():
            values = {"claimed_until": None} if when is None else {"claimed_until": None, "next_attempt_at": when}
            session.execute(update(Delivery).where(Delivery.id == d_id, Delivery.status == DeliveryStatus.PENDING)
                            .values(**values).execution_options(synchronize_session=False))


def record_outcomes(svc: Services, outcomes: list[DeliveryOutcome]) -> None:
    """Write many outcomes in one transaction (one write per send made sends wait on each
    other for the database: SQLite's single writer, PostgreSQL's commit)."""
    rows = [{
        "d_id": o.delivery_id, "d_attempts": o.attempts, "d_last_status": o.last_status,
        "d_last_error": o.last_error, "d_status": o.status, "d_next": o.next_attempt_at,
        "d_delivered_at": o.next_attempt_at if o.outcome is Outcome.DELIVERED else None,
    } for o in outcomes if not o.remove_subscription]
    if rows:
        with transaction(svc.sessions) as session:
            session.connection().execute(_RECORD, rows)


def remove_subscription(svc: Services, sub_id: str) -> None:
    """410 Gone: the receiver (e.g. a Zap turned off) unsubscribed. Deleting the
    subscription drops its deliveries (ON DELETE CASCADE), as a DELETE /hooks/{id} would."""
    with transaction(svc.sessions) as session:
        watch_id = session.scalar(select(Subscription.watch_id).where(Subscription.id == sub_id))
        session.execute(delete(Subscription).where(Subscription.id == sub_id)
                        .execution_options(synchronize_session=False))
        if watch_id is not None:
            subscriptions.release_watch_if_unused(session, watch_id)
