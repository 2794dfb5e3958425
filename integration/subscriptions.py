"""Webhook subscriptions (Zapier REST hooks, Make instant triggers), scoped to the key's owner."""
from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import func, select

from integration import errors, watches
from integration.db import transaction
from integration.delivery import TargetRefused, check_target_url, new_secret
from integration.models import Delivery, Event, Subscription, Watch, utcnow
from integration.platforms import Platform
from integration.services import Services
from integration.upstream import Meter


def create(svc: Services, owner: str, api_key: str, platform: Platform, handle: str, target_url: str,
           meter: Meter) -> dict:
    try:
        target = check_target_url(target_url, allow_private=svc.settings.allow_private_webhook_targets)
    except TargetRefused as exc:
        raise errors.ApiError(400, "invalid_target_url", str(exc), fields={"targetUrl": [str(exc)]})
    watch_id = watches.get_or_create_watch(svc, owner, handle)
    # Take (or refresh) the baseline now, so the first delivery is a genuinely new follow.
    watches.ensure_fresh(svc, watch_id, api_key, platform, meter)
    secret = new_secret()
    sub_id = "sub_" + secrets.token_hex(12)
    with transaction(svc.sessions) as session:
        watch = session.get(Watch, watch_id)
        # The worker refreshes with the newest key of this owner; stored encrypted only.
        watch.api_key_enc = svc.vault.encrypt(api_key)
        watch.status, watch.status_reason = "active", None
        if watch.next_poll_at is None:
            watch.next_poll_at = utcnow() + dt.timedelta(seconds=svc.settings.poll_interval_seconds)
        sub = Subscription(id=sub_id, watch_id=watch_id, owner_hash=owner, platform=platform.value,
                           target_url=target, secret_enc=svc.vault.encrypt(secret))
        session.add(sub)
        session.flush()
        out = _view(sub, watch, handle)
    out["secret"] = secret  # shown once: Zapier/Make keep it to verify signatures
    return out


def list_for(svc: Services, owner: str) -> list[dict]:
    with svc.sessions() as session:
        rows = session.execute(select(Subscription, Watch).join(Watch, Watch.id == Subscription.watch_id)
                               .where(Subscription.owner_hash == owner).order_by(Subscription.created_at)).all()
        counts = _counts(session, [s.id for s, _ in rows])
        return [_view(s, w, w.handle, counts.get(s.id)) for s, w in rows]


def get(svc: Services, owner: str, sub_id: str) -> dict:
    with svc.sessions() as session:
        row = _owned(session, owner, sub_id)
        sub, watch = row
        return _view(sub, watch, watch.handle, _counts(session, [sub.id]).get(sub.id))


def delete(svc: Services, owner: str, sub_id: str) -> None:
    with transaction(svc.sessions) as session:
        sub, watch = _owned(session, owner, sub_id)
        session.delete(sub)
        session.flush()
        remaining = session.scalar(select(func.count()).select_from(Subscription).where(Subscription.watch_id == watch.id))
        if not remaining:
            # Nobody listens any more: stop polling and forget the stored key.
            watch.api_key_enc, watch.next_poll_at = None, None


def deliveries(svc: Services, owner: str, sub_id: str, status: str | None, limit: int = 100) -> list[dict]:
    with svc.sessions() as session:
        _owned(session, owner, sub_id)
        query = select(Delivery).where(Delivery.subscription_id == sub_id)
        if status:
            query = query.where(Delivery.status == status)
        rows = session.execute(query.join(Event, Event.id == Delivery.event_id).add_columns(Event.sequence)
                               .order_by(Delivery.created_at.desc()).limit(limit)).all()
        return [{
            "id": d.id, "eventSequence": seq, "status": d.status, "attempts": d.attempts,
            "lastStatus": d.last_status, "lastError": d.last_error,
            "nextAttemptAt": watches.iso(d.next_attempt_at) if d.status == "pending" else None,
            "createdAt": watches.iso(d.created_at),
        } for d, seq in rows]


def _owned(session, owner: str, sub_id: str):
    row = session.execute(select(Subscription, Watch).join(Watch, Watch.id == Subscription.watch_id)
                          .where(Subscription.id == sub_id, Subscription.owner_hash == owner)).first()
    if row is None:
        raise errors.not_found("This subscription")  # another key's id looks exactly like a missing one
    return row


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
        "statusReason": watch.status_reason if paused else None,
        "createdAt": watches.iso(sub.created_at),
        "deliveredCount": counts.get("delivered", 0), "failedCount": counts.get("failed", 0),
    }
