"""Webhook subscriptions (Zapier REST hooks, Make instant triggers), scoped to the key's owner."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from integration import crowds, errors, items, sweeps, watchlists, watches
from integration.items import EventKind
from integration.db import lock_owner as _lock_owner, transaction
from integration.delivery import TargetRefused, check_target_url, new_secret
from integration.filters import NO_FILTERS, Filters
from integration.models import Crowd, Delivery, Event, Subscription, Watch
from integration.platforms import Platform
from integration.schedule import Wish, check_every_label, interval_for
from integration.services import Services
from integration.upstream import Meter


def create(svc: Services, owner: str, api_key: str, platform: Platform, handle: str, target_url: str,
           meter: Meter, event: EventKind = EventKind.NEW_FOLLOWING,
           filters: Filters = NO_FILTERS, wish: Wish = Wish(), sweep_every: int | None = None) -> tuple[dict, bool]:
    """Subscribe, or return the caller's identical subscription: (view with secret, created?).

    Idempotent on (owner, handle, event, target): Zapier and Make re-subscribe the same
    target, and need its signing secret again. Only the key's owner can ask, so the
    secret goes back to the one who already holds it. At most MAX_SUBSCRIPTIONS_PER_KEY.
    Subscribing again with other `filters` replaces the stored ones: they decide about the
    events detected from then on (nothing already written is replayed or withdrawn)."""
    try:
        target = check_target_url(target_url, allow_private=svc.settings.allow_private_webhook_targets)
    except TargetRefused as exc:
        raise errors.ApiError(400, "invalid_target_url", str(exc), fields={"targetUrl": [str(exc)]})
    target_hash = hashlib.sha256(target.encode()).hexdigest()
    for _ in range(3):
        # Takes (or refreshes) the baseline now, so the first delivery is a genuinely new
        # follow; a refused key stops here with nothing stored.
        watch_id, _ = watches.open_watch(svc, owner, handle, api_key, platform, meter, wish)
        if event is EventKind.UNFOLLOWED:  # the worker sweeps it (its first sweep only records)
            sweeps.want(svc, watch_id, sweep_every or sweeps.SWEEP_EVERY_DEFAULT)
        try:
            return _subscribe(svc, owner, api_key, platform, watch_id, handle, event, target, target_hash, filters)
        except (IntegrityError, watches.WatchGone):
            continue  # an identical concurrent subscribe won, or retention took the watch: again
    raise RuntimeError("could not subscribe")


def _watch_and_existing(session, owner: str, watch_id: int, event, target_hash: str, crowd_id: int | None = None):
    """The watch (gone: WatchGone) and this owner's subscription of it for (event, target,
    crowd), if any."""
    watch = session.get(Watch, watch_id)
    if watch is None:
        raise watches.WatchGone(watch_id)
    sub = session.scalar(select(Subscription).where(
        Subscription.owner_hash == owner, Subscription.watch_id == watch_id,
        Subscription.event == event.value, Subscription.target_hash == target_hash,
        Subscription.crowd_id.is_(None) if crowd_id is None else Subscription.crowd_id == crowd_id))
    return watch, sub


def _subscribe(svc, owner, api_key, platform, watch_id, handle, event, target, target_hash,
               filters: Filters) -> tuple[dict, bool]:
    with transaction(svc.sessions) as session:
        _lock_owner(session, owner)
        watch, sub = _watch_and_existing(session, owner, watch_id, event, target_hash)
        created = sub is None
        if created:
            count = session.scalar(select(func.count()).select_from(Subscription)
                                   .where(Subscription.owner_hash == owner))
            limit = svc.settings.max_subscriptions_per_key
            if count >= limit:
                raise errors.too_many_subscriptions(limit)
            secret = new_secret()
            sub = Subscription(id="sub_" + secrets.token_hex(12), watch_id=watch_id, owner_hash=owner,
                               platform=platform.value, target_url=target, secret_enc=svc.vault.encrypt(secret),
                               event=event.value, target_hash=target_hash)
            session.add(sub)
        else:
            secret = svc.vault.decrypt(sub.secret_enc)
            if secret is None:  # unreadable after a rotation that dropped its secret: a new one
                secret = new_secret()
                sub.secret_enc = svc.vault.encrypt(secret)
        sub.filters = filters.to_json()
        _arm(svc, session, watch, api_key)
        session.flush()
        out = _view(sub, watch, handle)
    out["secret"] = secret  # Zapier/Make keep it to verify signatures
    return out, created


def _arm(svc: Services, session, watch: Watch, api_key: str) -> None:
    # The worker refreshes with the newest key of this owner (stored encrypted only);
    # subscribing again with a working key resumes a paused watch.
    watch.api_key_enc = svc.vault.encrypt(api_key)
    watch.status, watch.status_reason = "active", None
    now = svc.clock()
    first = now + (interval_for(session, watch, now) or dt.timedelta(seconds=svc.settings.poll_interval_seconds))
    if watch.next_poll_at is None or watch.next_poll_at > first:  # a smaller checkEvery takes effect now
        watch.next_poll_at = first


def create_group(svc: Services, owner: str, api_key: str, platform: Platform, handles: list[str],
                 target_url: str, meter: Meter, event: EventKind = EventKind.NEW_FOLLOWING,
                 filters: Filters = NO_FILTERS, wish: Wish = Wish(),
                 sweep_every: int | None = None, crowd: tuple[int, int] | None = None) -> tuple[dict, bool]:
    """Subscribe a watchlist (`handles`): one subscription row per handle (so the worker, the
    outbox and MAX_SUBSCRIPTIONS_PER_KEY treat each handle as today: 50 handles count 50),
    sharing a group id and one signing secret. The answer's `id` is the group id: reading or
    deleting it reads or deletes every row. Idempotent on (owner, handles set, event, target):
    the same request again returns the group (200). A handle already subscribed to the same
    target and event (alone or in another group) moves into the new group, with its secret.

    event followed_by_many: `crowd` is (minHandles, withinDays); the rows carry the crowd's id
    (integration/crowds.py), so two crowds on the same handles and target are two groups."""
    try:
        target = check_target_url(target_url, allow_private=svc.settings.allow_private_webhook_targets)
    except TargetRefused as exc:
        raise errors.ApiError(400, "invalid_target_url", str(exc), fields={"targetUrl": [str(exc)]})
    target_hash = hashlib.sha256(target.encode()).hexdigest()
    if event is EventKind.FOLLOWED_BY_MANY:
        crowds.refuse_if_full(svc, owner, handles, *crowd)

    def open_one(handle: str) -> tuple[int, bool]:
        watch_id, result = watches.open_watch(svc, owner, handle, api_key, platform, meter, wish)
        if event is EventKind.UNFOLLOWED:
            sweeps.want(svc, watch_id, sweep_every or sweeps.SWEEP_EVERY_DEFAULT)
        return watch_id, result.refreshed

    for _ in range(3):
        opened, _ = watchlists.open_all(svc, owner, handles, open_one,
                                        budget_seconds=svc.settings.action_budget_seconds)
        if len(opened) < len(handles):  # a first baseline still running: nothing stored yet
            raise errors.UpstreamFailure("timeout")
        crowd_id = None
        if event is EventKind.FOLLOWED_BY_MANY:
            crowd_id = crowds.open_crowd(svc, owner, opened, handles, *crowd)
        try:
            out, created = _subscribe_group(svc, owner, api_key, platform, opened, event, target, target_hash,
                                            filters, crowd_id)
            if crowd is not None:
                out["minHandles"], out["withinDays"] = crowd
            return out, created
        except (IntegrityError, watches.WatchGone):
            continue
    raise RuntimeError("could not subscribe")


def _subscribe_group(svc, owner, api_key, platform, opened: dict[str, int], event, target, target_hash,
                     filters: Filters, crowd_id: int | None = None) -> tuple[dict, bool]:
    with transaction(svc.sessions) as session:
        _lock_owner(session, owner)
        pairs = []
        for handle, watch_id in opened.items():
            watch, sub = _watch_and_existing(session, owner, watch_id, event, target_hash, crowd_id)
            pairs.append((sub, watch))
        groups = {sub.group_id if sub is not None else None for sub, _ in pairs}
        group_id = next(iter(groups))
        same = len(groups) == 1 and group_id is not None and session.scalar(
            select(func.count()).select_from(Subscription).where(Subscription.group_id == group_id)) == len(pairs)
        if same:
            secret = svc.vault.decrypt(pairs[0][0].secret_enc)
        if not same or secret is None:
            missing = sum(sub is None for sub, _ in pairs)
            count = session.scalar(select(func.count()).select_from(Subscription)
                                   .where(Subscription.owner_hash == owner))
            limit = svc.settings.max_subscriptions_per_key
            if count + missing > limit:
                raise errors.too_many_subscriptions(limit)
            group_id = group_id if same else "sub_" + secrets.token_hex(12)
            secret = new_secret()
            secret_enc = svc.vault.encrypt(secret)
            for index, (sub, watch) in enumerate(pairs):
                if sub is None:
                    sub = Subscription(id="sub_" + secrets.token_hex(12), watch_id=watch.id, owner_hash=owner,
                                       platform=platform.value, target_url=target, event=event.value,
                                       target_hash=target_hash, crowd_id=crowd_id)
                    session.add(sub)
                    pairs[index] = (sub, watch)
                sub.group_id, sub.secret_enc = group_id, secret_enc
        for sub, watch in pairs:
            sub.filters = filters.to_json()
            _arm(svc, session, watch, api_key)
        session.flush()
        out = _group_view(group_id, pairs)
    out["secret"] = secret
    return out, not same


def release_watch_if_unused(session, watch_id: int) -> None:
    """After a subscription went (DELETE, or the receiver's 410): if it was the watch's last,
    stop polling and forget the stored key. One copy of the rule, for the API and the worker."""
    remaining = session.scalar(select(func.count()).select_from(Subscription).where(Subscription.watch_id == watch_id))
    if not remaining:
        session.execute(update(Watch).where(Watch.id == watch_id).values(api_key_enc=None, next_poll_at=None)
                        .execution_options(synchronize_session=False))


def list_for(svc: Services, owner: str) -> list[dict]:
    with svc.sessions() as session:
        rows = session.execute(select(Subscription, Watch).join(Watch, Watch.id == Subscription.watch_id)
                               .where(Subscription.owner_hash == owner).order_by(Subscription.created_at)).all()
        counts = _counts(session, [s.id for s, _ in rows])
        groups: dict[str, list] = {}
        for row in rows:
            if row[0].group_id is not None:
                groups.setdefault(row[0].group_id, []).append(row)
        out = []
        for s, w in rows:  # a watchlist is listed once, where its first row is
            if s.group_id is None:
                out.append(_view(s, w, w.handle, counts.get(s.id)))
            elif groups[s.group_id][0][0] is s:
                out.append(_with_crowd(session, _group_view(s.group_id, groups[s.group_id], counts), s))
        return out


def get(svc: Services, owner: str, sub_id: str) -> dict:
    with svc.sessions() as session:
        rows = _owned(session, owner, sub_id)
        counts = _counts(session, [sub.id for sub, _ in rows])
        if rows[0][0].id == sub_id:
            sub, watch = rows[0]
            return _view(sub, watch, watch.handle, counts.get(sub.id))
        return _with_crowd(session, _group_view(sub_id, rows, counts), rows[0][0])


def _with_crowd(session, view: dict, sub: Subscription) -> dict:
    """A followed_by_many group shows its crowd's minHandles and withinDays."""
    if sub.crowd_id is not None:
        crowd = session.get(Crowd, sub.crowd_id)
        if crowd is not None:
            view["minHandles"], view["withinDays"] = crowd.min_handles, crowd.within_days
    return view


def delete(svc: Services, owner: str, sub_id: str) -> None:
    """A subscription's id deletes it; a watchlist's group id deletes all its rows."""
    with transaction(svc.sessions) as session:
        rows = _owned(session, owner, sub_id)
        for sub, _ in rows:
            session.delete(sub)
        session.flush()
        for watch_id in {watch.id for _, watch in rows}:
            release_watch_if_unused(session, watch_id)


def deliveries(svc: Services, owner: str, sub_id: str, status: str | None, limit: int = 100) -> list[dict]:
    with svc.sessions() as session:
        ids = [sub.id for sub, _ in _owned(session, owner, sub_id)]
        query = select(Delivery).where(Delivery.subscription_id.in_(ids))
        if status:
            query = query.where(Delivery.status == status)
        rows = session.execute(query.join(Event, Event.id == Delivery.event_id).add_columns(Event.sequence)
                               .order_by(Delivery.created_at.desc()).limit(limit)).all()
        return [{
            "id": d.id, "eventSequence": seq, "status": d.status, "attempts": d.attempts,
            "lastStatus": d.last_status, "lastError": d.last_error,
            "nextAttemptAt": items.iso(d.next_attempt_at) if d.status == "pending" else None,
            "createdAt": items.iso(d.created_at),
        } for d, seq in rows]


def _owned(session, owner: str, sub_id: str) -> list:
    """[(subscription, watch)]: the row of that id, or every row of that watchlist group."""
    rows = session.execute(select(Subscription, Watch).join(Watch, Watch.id == Subscription.watch_id)
                           .where(or_(Subscription.id == sub_id, Subscription.group_id == sub_id),
                                  Subscription.owner_hash == owner).order_by(Subscription.created_at)).all()
    if not rows:
        raise errors.not_found("This subscription")  # another key's id looks exactly like a missing one
    single = [row for row in rows if row[0].id == sub_id]
    return single or list(rows)


def _counts(session, sub_ids: list[str]) -> dict:
    if not sub_ids:
        return {}
    rows = session.execute(select(Delivery.subscription_id, Delivery.status, func.count())
                           .where(Delivery.subscription_id.in_(sub_ids))
                           .group_by(Delivery.subscription_id, Delivery.status)).all()
    out: dict = {}
    for sub_id, status, n in rows:
        out.setdefault(sub_id, {})[status] = n
    return out


def _view(sub: Subscription, watch: Watch, handle: str, counts: dict | None = None) -> dict:
    counts = counts or {}
    paused = watch.status != "active"
    return {
        "id": sub.id, "handle": handle, "targetUrl": sub.target_url, "platform": sub.platform,
        "status": "paused" if paused else "active",
        "statusReason": watch.status_reason if paused else _detection_note(watch.detection_mode),
        "createdAt": items.iso(sub.created_at),
        "deliveredCount": counts.get("delivered", 0), "failedCount": counts.get("failed", 0),
        "filters": json.loads(sub.filters) if sub.filters else None,
        "checkEvery": check_every_label(watch),
        "event": sub.event,
    }


def _group_view(group_id: str, rows, counts: dict | None = None) -> dict:
    """A watchlist subscription as one object: its first handle's view, the group's id,
    every handle (sorted: rows made in one transaction share created_at), and the delivery
    counts summed."""
    counts = counts or {}
    rows = sorted(rows, key=lambda row: row[1].handle)
    sub, watch = rows[0]
    out = _view(sub, watch, watch.handle)
    out["id"], out["handles"] = group_id, [w.handle for _, w in rows]
    for name, status in (("deliveredCount", "delivered"), ("failedCount", "failed")):
        out[name] = sum(counts.get(s.id, {}).get(status, 0) for s, _ in rows)
    if any(w.status != "active" for _, w in rows) and out["status"] == "active":
        paused = next(w for _, w in rows if w.status != "active")
        out["status"], out["statusReason"] = "paused", f"{paused.handle}: {paused.status_reason}"
    return out


def _detection_note(mode: str | None) -> str | None:
    """An active watch whose last refresh ran in detection's safe mode says so (issue: exact detection)."""
    if mode is None:
        return None
    return (f"DumplingAI's answers did not follow its documented paging ({mode}), so new follows are checked "
            "conservatively: a follow may arrive late, or be missed in a large burst.")
