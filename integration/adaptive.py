"""Adaptive checking (`checkEvery: "auto"`): pure functions, no I/O.

A watch's follow rate is estimated from the journal's recent detection times; a key's
checks per day (its budget, or by default what a fixed 15-minute check of each watch
would cost) are shared between its "auto" watches so as to minimise the mean time from a
follow to its detection. A follow waits on average half an interval, so with rates r_i
and intervals I_i the mean delay is proportional to sum(r_i * I_i) under the constraint
sum(1 / I_i) = checks per day; Lagrange gives I_i proportional to 1 / sqrt(r_i): a handle
that follows 100x as often is checked 10x as often. Intervals stay within 1 minute and
1 day; what a clamped watch does not use is shared among the others.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Hashable, Iterable, Mapping

MIN_INTERVAL = dt.timedelta(minutes=1)
MAX_INTERVAL = dt.timedelta(days=1)
DEFAULT_FIXED_MINUTES = 15          # "auto" costs by default what a fixed 15-minute check costs
HORIZON = dt.timedelta(days=7)      # how far back the journal is read for the rate
PRIOR_FOLLOWS = 1.0                 # a handle with no history is taken to follow about once a week
PRIOR_DAYS = 7.0
DAY = 86400.0


def default_checks_per_day(auto_watches: int) -> float:
    return auto_watches * DAY / (DEFAULT_FIXED_MINUTES * 60)


def follow_rate(detections: Iterable[dt.datetime], now: dt.datetime, horizon: dt.timedelta = HORIZON) -> float:
    """Follows per day: the detections in the last `horizon`, smoothed by a weak prior so one
    quiet week does not drop a handle to once a day and a new handle is not ignored."""
    start = now - horizon
    seen = sum(1 for moment in detections if start < moment <= now)
    return (seen + PRIOR_FOLLOWS) / (horizon.total_seconds() / DAY + PRIOR_DAYS)


def intervals(rates: Mapping[Hashable, float], checks_per_day: float) -> dict[Hashable, dt.timedelta]:
    """Each watch's check interval: proportional to 1/sqrt(rate), spending `checks_per_day`
    in all, each between MIN_INTERVAL and MAX_INTERVAL."""
    lo, hi = MIN_INTERVAL.total_seconds(), MAX_INTERVAL.total_seconds()
    out: dict[Hashable, float] = {}
    free = {k: math.sqrt(max(r, 1e-9)) for k, r in rates.items()}
    left = max(checks_per_day, 0.0)
    while free:
        weight = sum(free.values())
        # checks per day of watch k: left * w_k / weight; its interval DAY / that.
        trial = {k: DAY / share if (share := left * w / weight) > 0 else hi for k, w in free.items()}
        # Clamp one side at a time: watches held at one check a minute free checks for the
        # others, which may lift some of them off the once-a-day floor.
        clamped = ({k: lo for k, v in trial.items() if v < lo}
                   or {k: hi for k, v in trial.items() if v > hi})
        if not clamped:
            out.update(trial)
            break
        for k, v in clamped.items():  # fixed at the bound; the rest share what is left
            out[k] = v
            left -= DAY / v
            del free[k]
        left = max(left, 0.0)
    return {k: dt.timedelta(seconds=v) for k, v in out.items()}


def next_check(last_check: dt.datetime, interval: dt.timedelta, now: dt.datetime) -> dt.datetime:
    """The next check: an interval after the last one, never in the past."""
    return max(last_check + interval, now)
