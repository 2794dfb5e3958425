""""Followed by many": the shell around the pure rule in `integration.crossings`.

A crowd is (owner, the set of handles, minHandles, withinDays), one row shared by every
trigger call and subscription asking for it. Each handle keeps its own watch (refreshed,
coalesced and charged as for new follows); the crowd only reads their journals:

- `open_crowd`: the crowd of a definition, made on first use. Its marks start at each
  watch's current journal head, and accounts ALREADY at the threshold within the window go
  to `crowd_fired` without an event: they crossed before the crowd existed.
- `evaluate`: in one transaction holding the crowd's row lock, the new follows above the
  marks, the crowd's earlier follows of those accounts within the window, the crossings;
  each crossing is a `followed_by_many` row of the journal of the watch whose follow crossed
  (so eventId, deliveries, the outbox and retention work as for any event), with its
  deliveries; then the marks move. A crash before the commit loses nothing: the marks did
  not move, the next evaluation (trigger call or worker refresh) finds the same follows.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterable

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import load_only

from integration import errors
from integration.crossings import Crossing, Follow, crossings, window_start
from integration.db import lock_owner, transaction
from integration.filters import NO_FILTERS, Filters
from integration.items import FOLLOWED_BY_MANY, NEW_FOLLOWING, detected_after, event_item
from integration.models import Crowd, CrowdFired, CrowdWatch, Delivery, Event, Subscription, Watch
from integration.services import Services

TOUCH_EVERY = dt.timedelta(hours=1)  # `last_used_at` is written at most this often per crowd
CHUNK = 500  # account ids per IN (...): far below SQLite's and PostgreSQL's parameter limits


def definition(handles: Iterable[str], min_handles: int, within_days: int) -> str:
    """The same handles in any order, with the same numbers, are the same crowd."""
    text = json.dumps([sorted(handles), min_handles, within_days], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def refuse_if_full(svc: Services, owner: str, handles: list[str], min_handles: int, within_days: int) -> None:
    """Before any upstream call: a new crowd past MAX_CROWDS_PER_KEY is a 409 that costs nothing
    (`_insert` checks again under the owner's lock)."""
    limit = svc.settings.max_crowds_per_key
    with svc.sessions() as session:
        exists = session.scalar(select(Crowd.id).where(Crowd.owner_hash == owner,
                                                       Crowd.definition == definition(handles, min_handles, within_days)))
        if exists is None and session.scalar(
                select(func.count()).select_from(Crowd).where(Crowd.owner_hash == owner)) >= limit:
            raise errors.too_many_crowds(limit)


def open_crowd(svc: Services, owner: str, watch_ids: dict[str, int], handles: list[str], min_handles: int,
               within_days: int) -> int:
    """The crowd's id (made on first use, at most MAX_CROWDS_PER_KEY per owner), with every
    watch in `watch_ids` attached (a handle not yet watched joins on a later call)."""
    key = definition(handles, min_handles, within_days)
    for _ in range(3):
        now = svc.clock()
        with svc.sessions() as session:
            crowd = session.scalar(select(Crowd).where(Crowd.owner_hash == owner, Crowd.definition == key))
            attached = set() if crowd is None else set(session.scalars(
                select(CrowdWatch.watch_id).where(CrowdWatch.crowd_id == crowd.id)))
        missing = set(watch_ids.values()) - attached
        if crowd is not None and not missing and crowd.last_used_at >= now - TOUCH_EVERY:
            return crowd.id
        try:
            with transaction(svc.sessions) as session:
                if crowd is None:
                    crowd = _insert(svc, session, owner, key, handles, min_handles, within_days, now)
                else:
                    crowd = session.get(Crowd, crowd.id, with_for_update=True)
                    if crowd is None:
                        continue  # retention took it meanwhile: make it again
                    crowd.last_used_at = now
                if missing:
                    _attach(session, crowd, missing, now)
                return crowd.id
        except IntegrityError:
            continue  # made (or attached) concurrently: read it again
    raise RuntimeError("could not open the crowd")


def _insert(svc, session, owner, key, handles, min_handles, within_days, now) -> Crowd:
    lock_owner(session, owner)
    count = session.scalar(select(func.count()).select_from(Crowd).where(Crowd.owner_hash == owner))
    if count >= svc.settings.max_crowds_per_key:
        raise errors.too_many_crowds(svc.settings.max_crowds_per_key)
    crowd = Crowd(owner_hash=owner, definition=key, handles=json.dumps(sorted(handles)), min_handles=min_handles,
                  within_days=within_days, created_at=now, last_used_at=now)
    session.add(crowd)
    session.flush()
    return crowd


def _attach(session, crowd: Crowd, watch_ids: set[int], now: dt.datetime) -> None:
    """Marks at each watch's journal head; accounts already at the threshold are fired silently."""
    heads = session.execute(select(Watch.id, Watch.last_sequence).where(Watch.id.in_(list(watch_ids)))).all()
    session.add_all(CrowdWatch(crowd_id=crowd.id, watch_id=watch_id, scanned_sequence=head)
                    for watch_id, head in heads)
    session.flush()
    all_watches = select(CrowdWatch.watch_id).where(CrowdWatch.crowd_id == crowd.id)
    over = session.scalars(
        select(Event.account_id)
        .where(Event.watch_id.in_(all_watches), Event.event == NEW_FOLLOWING,
               Event.detected_at >= now - dt.timedelta(days=crowd.within_days))
        .group_by(Event.account_id).having(func.count(func.distinct(Event.watch_id)) >= crowd.min_handles)).all()
    known = _fired_among(session, crowd.id, over)
    session.add_all(CrowdFired(crowd_id=crowd.id, account_id=a) for a in set(over) - known)


def _fired_among(session, crowd_id: int, accounts: Iterable[str]) -> set[str]:
    accounts, out = list(accounts), set()
    for i in range(0, len(accounts), CHUNK):
        out.update(session.scalars(select(CrowdFired.account_id).where(
            CrowdFired.crowd_id == crowd_id, CrowdFired.account_id.in_(accounts[i:i + CHUNK]))))
    return out


_FOLLOW_COLUMNS = (Event.id, Event.watch_id, Event.sequence, Event.account_id, Event.detected_at)


def evaluate(svc: Services, crowd_id: int) -> int:
    """Evaluate the follows the crowd has not seen; the number of followed_by_many events written."""
    with transaction(svc.sessions) as session:
        crowd = session.get(Crowd, crowd_id, with_for_update=True)  # one evaluation per crowd at a time
        if crowd is None:
            return 0
        marks = dict(session.execute(select(CrowdWatch.watch_id, CrowdWatch.scanned_sequence)
                                     .where(CrowdWatch.crowd_id == crowd_id)).all())
        if not marks:
            return 0
        # Per-watch sequences commit in order (under the watch row lock): every follow above a
        # mark committed later than what is read here has a higher sequence.
        rows = session.execute(
            select(*_FOLLOW_COLUMNS)
            .where(or_(*(and_(Event.watch_id == w, Event.sequence > m) for w, m in marks.items())),
                   Event.event == NEW_FOLLOWING)
            .order_by(Event.detected_at, Event.id)).all()
        if not rows:
            return 0
        handles = dict(session.execute(select(Watch.id, Watch.handle).where(Watch.id.in_(list(marks)))).all())
        batch = [Follow(r.account_id, handles[r.watch_id], r.detected_at, r.id) for r in rows]
        within = dt.timedelta(days=crowd.within_days)
        accounts = sorted({f.account_id for f in batch})
        found = crossings(_history(session, marks, handles, accounts, window_start(batch, within)), batch,
                          min_handles=crowd.min_handles, within=within,
                          fired=_fired_among(session, crowd_id, accounts))
        written = _write(svc, session, crowd, found, {r.id: r.watch_id for r in rows})
        heads: dict[int, int] = {}
        for r in rows:
            heads[r.watch_id] = max(heads.get(r.watch_id, 0), r.sequence)
        for watch_id, head in heads.items():
            session.execute(update(CrowdWatch).where(CrowdWatch.crowd_id == crowd_id, CrowdWatch.watch_id == watch_id)
                            .values(scanned_sequence=head).execution_options(synchronize_session=False))
        return written


def _history(session, marks: dict[int, int], handles: dict[int, str], accounts: list[str],
             since: dt.datetime) -> list[Follow]:
    """The crowd's follows of `accounts` already evaluated (at or below the marks), since `since`."""
    out = []
    for i in range(0, len(accounts), CHUNK):
        out += [Follow(r.account_id, handles[r.watch_id], r.detected_at, r.id) for r in session.execute(
            select(*_FOLLOW_COLUMNS)
            .where(Event.watch_id.in_(list(marks)), Event.event == NEW_FOLLOWING, Event.detected_at >= since,
                   Event.account_id.in_(accounts[i:i + CHUNK]))) if r.sequence <= marks[r.watch_id]]
    return sorted(out, key=lambda f: (f.at, f.ref))


def _write(svc: Services, session, crowd: Crowd, found: list[Crossing], watch_of: dict[int, int]) -> int:
    """Each crossing: fired, a followed_by_many event on the crossing watch's journal, and a
    delivery for each of the crowd's subscription groups (their row on that watch)."""
    if not found:
        return 0
    now = svc.clock()
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # what `detectedAt` shows is what `since` compares
    payloads = dict(session.execute(select(Event.id, Event.payload)
                                    .where(Event.id.in_([c.follow.ref for c in found]))).all())
    watch_ids = sorted({watch_of[c.follow.ref] for c in found})
    # The journal heads, locked in id order (two crowds sharing watches never deadlock).
    watches = {w.id: w for w in session.scalars(select(Watch).options(load_only(Watch.id, Watch.last_sequence))
                                                .where(Watch.id.in_(watch_ids)).order_by(Watch.id)
                                                .with_for_update())}
    subscriptions = session.execute(select(Subscription.id, Subscription.watch_id, Subscription.filters)
                                    .where(Subscription.crowd_id == crowd.id,
                                           Subscription.watch_id.in_(watch_ids))).all()
    for crossing in found:
        account = json.loads(payloads[crossing.follow.ref])
        watch = watches[watch_of[crossing.follow.ref]]
        watch.last_sequence += 1
        event = Event(watch_id=watch.id, sequence=watch.last_sequence, account_id=crossing.follow.account_id,
                      detected_at=now, payload=json.dumps({**account, "followedByHandles": list(crossing.handles)}),
                      event=FOLLOWED_BY_MANY, crowd_id=crowd.id)
        session.add_all([CrowdFired(crowd_id=crowd.id, account_id=crossing.follow.account_id), event])
        session.flush()
        session.add_all(Delivery(id=secrets.token_hex(12), subscription_id=sub_id, event_id=event.id,
                                 next_attempt_at=now)
                        for sub_id, sub_watch, stored in subscriptions
                        if sub_watch == watch.id and Filters.from_json(stored).keep(account))
    return len(found)


def evaluate_for_watch(svc: Services, watch_id: int) -> int:
    """After the worker refreshed a watch: evaluate the crowds subscribed on it."""
    with svc.sessions() as session:
        crowd_ids = session.scalars(select(Subscription.crowd_id).distinct()
                                    .where(Subscription.watch_id == watch_id, Subscription.crowd_id.is_not(None))).all()
    return sum(evaluate(svc, crowd_id) for crowd_id in crowd_ids)


def trigger_items(svc: Services, crowd_id: int, *, limit: int, since: dt.datetime | None = None,
                  filters: Filters = NO_FILTERS) -> list[dict]:
    """The crowd's events, newest first, those passing `filters`, at most `limit`."""
    query = select(Event).where(Event.crowd_id == crowd_id, Event.event == FOLLOWED_BY_MANY)
    if since is not None:
        query = query.where(detected_after(since))
    query = query.order_by(Event.detected_at.desc(), Event.id.desc())
    if not filters.active:
        query = query.limit(limit)
    out: list[dict] = []
    with svc.sessions() as session:
        for event in session.scalars(query.execution_options(yield_per=200)):
            item = event_item("", event)  # the handles are in the payload
            if filters.keep(item):
                out.append(item)
                if len(out) >= limit:
                    break
    return out


def delete_idle(svc: Services, cutoff: dt.datetime) -> int:
    """Retention: crowds unused since `cutoff` with no subscription, with their events (no
    foreign key on events.crowd_id; marks and fired accounts go by ON DELETE CASCADE)."""
    subscribed = select(Subscription.crowd_id).where(Subscription.crowd_id.is_not(None))
    with transaction(svc.sessions) as session:
        ids = session.scalars(select(Crowd.id).where(Crowd.last_used_at < cutoff, Crowd.id.not_in(subscribed))
                              .with_for_update()).all()
        if not ids:
            return 0
        session.execute(delete(Event).where(Event.crowd_id.in_(ids)).execution_options(synchronize_session=False))
        return session.execute(delete(Crowd).where(Crowd.id.in_(ids)).execution_options(synchronize_session=False)
                               ).rowcount
