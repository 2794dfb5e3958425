"""GET /v1/{platform}/usage: what watching costs a key (free: the ledger, no upstream call)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from integration import items, ledger
from integration.models import Watch
from integration.schedule import check_every_label, interval_for
from integration.services import Services


def for_owner(svc: Services, owner: str, budget: int | None) -> dict:
    now = svc.clock()
    today = now.date()
    days = ledger.days(svc.sessions, owner, today)
    since = today - dt.timedelta(days=ledger.USAGE_DAYS - 1)
    with svc.sessions() as session:
        rows = session.scalars(select(Watch).where(Watch.owner_hash == owner).order_by(Watch.handle)).all()
        credits = ledger.watch_credits(session, [w.id for w in rows], since)
        watched = [_watch_view(session, w, credits.get(w.id, 0), now) for w in rows]
    spent = days[0]["credits"]
    return {
        "day": today.isoformat(),
        "creditsToday": spent,
        "dailyBudget": budget,
        "budgetLeft": max(budget - spent, 0) if budget is not None else None,
        "resetsAt": items.iso(ledger.next_reset(now)),
        "creditsLast30Days": sum(d["credits"] for d in days),
        "days": days,
        "watches": watched,
    }


def _watch_view(session, watch: Watch, credits: int, now: dt.datetime) -> dict:
    if watch.next_poll_at is not None:  # the worker's schedule (the watch has subscriptions)
        upcoming = watch.next_poll_at
    else:  # polled by triggers: refreshed again once the interval has passed
        interval = interval_for(session, watch, now)
        upcoming = watch.last_refresh_at + interval if interval and watch.last_refresh_at else None
    return {
        "handle": watch.handle,
        "status": watch.status,
        "checkEvery": check_every_label(watch),
        "lastCheckAt": items.iso(watch.last_refresh_at) if watch.last_refresh_at else None,
        "nextCheckAt": items.iso(upcoming) if upcoming else None,
        "creditsLast30Days": int(credits or 0),
    }
