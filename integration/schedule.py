"""How often a watch is checked: `checkEvery` and the budget callers ask for, stored on the
watch, and the interval they give (fixed minutes, adaptive, or the service's default).

One copy of the rule "several callers of one key, different values: the smallest wins":
a fixed `checkEvery` only ever lowers the stored one; "auto" applies while nobody asked
for fixed minutes.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select

from integration import adaptive
from integration.adaptive import MIN_INTERVAL, next_check
from integration.models import Event, Watch

AUTO = "auto"


@dataclass(frozen=True)
class Wish:
    """What one request asks of a watch's checking (None: nothing)."""

    check_every: int | str | None = None  # minutes 1..1440, or "auto"
    budget: int | None = None             # X-Daily-Credit-Budget

    def changes(self, watch: Watch) -> dict:
        values = {}
        if isinstance(self.check_every, int) and (watch.check_every_minutes is None
                                                  or self.check_every < watch.check_every_minutes):
            values["check_every_minutes"] = self.check_every
        if self.check_every == AUTO and not watch.check_auto:
            values["check_auto"] = True
        if self.budget is not None and self.budget != watch.daily_budget:
            values["daily_budget"] = self.budget
        return values


def check_every_label(watch: Watch) -> int | str | None:
    if watch.check_every_minutes is not None:
        return watch.check_every_minutes
    return AUTO if watch.check_auto else None


def interval_for(session, watch: Watch, now: dt.datetime) -> dt.timedelta | None:
    """The watch's interval; None when no caller asked (the service's defaults apply)."""
    if watch.check_every_minutes is not None:
        return dt.timedelta(minutes=watch.check_every_minutes)
    if not watch.check_auto:
        return None
    # The key's "auto" watches share its budget (or a fixed 15-minute check's cost each).
    peers = session.execute(select(Watch.id).where(
        Watch.owner_hash == watch.owner_hash, Watch.check_auto.is_(True),
        Watch.check_every_minutes.is_(None))).all()
    ids = sorted({i for (i,) in peers} | {watch.id})
    since = now - adaptive.HORIZON
    detections: dict[int, list[dt.datetime]] = {i: [] for i in ids}
    # A "followed by many" row (crowd_id set) is not the handle's own activity.
    for watch_id, moment in session.execute(select(Event.watch_id, Event.detected_at)
                                            .where(Event.watch_id.in_(ids), Event.detected_at > since,
                                                   Event.crowd_id.is_(None))):
        detections[watch_id].append(moment)
    rates = {i: adaptive.follow_rate(d, now) for i, d in detections.items()}
    checks = (watch.daily_budget if watch.daily_budget is not None
              else adaptive.default_checks_per_day(len(ids)))
    return adaptive.intervals(rates, checks)[watch.id]


def next_poll(session, watch: Watch, now: dt.datetime, default: dt.timedelta, *, refreshed: bool) -> dt.datetime:
    """When the worker polls the watch next, after its turn at `now`: one interval (checkEvery,
    adaptive, or `default`) after the watch's last refresh, whoever made it. When a trigger
    call refreshed it meanwhile (`refreshed` False), that refresh counts (never sooner than
    the shortest interval)."""
    interval = interval_for(session, watch, now) or default
    if refreshed or watch.last_refresh_at is None:
        return now + interval
    return next_check(watch.last_refresh_at, interval, now + MIN_INTERVAL)
