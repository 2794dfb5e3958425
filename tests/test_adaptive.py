"""integration/adaptive.py on its own: the rate estimate and the sharing of a key's checks."""
from __future__ import annotations

import datetime as dt

from hypothesis import example, given, strategies as st

from integration import adaptive
from integration.adaptive import MAX_INTERVAL, MIN_INTERVAL, follow_rate, intervals, next_check

NOW = dt.datetime(2026, 11, 26, 12, 0)
DAY = 86400.0

rates = st.dictionaries(st.integers(0, 500), st.floats(0.0, 5000.0, allow_nan=False), min_size=1, max_size=40)
checks = st.floats(0.0, 200_000.0, allow_nan=False)


@given(rates, checks)
@example({1: 0.0}, 0.0)
@example({1: 5000.0, 2: 0.0}, 200_000.0)
def test_intervals_stay_between_a_minute_and_a_day(r, c):
    out = intervals(r, c)
    assert out.keys() == r.keys()
    assert all(MIN_INTERVAL - dt.timedelta(microseconds=1) <= i <= MAX_INTERVAL for i in out.values())


@given(rates, checks)
@example({1: 1.0, 2: 1.0}, 1.0)  # less than once a day each: the floor of one check a day wins
def test_the_checks_fit_the_budget_unless_the_daily_floor_needs_more(r, c):
    spent = sum(DAY / i.total_seconds() for i in intervals(r, c).values())
    assert spent <= max(c, len(r)) * (1 + 1e-9) + 1e-6


@given(rates, st.floats(100.0, 100_000.0))
def test_a_handle_that_follows_more_is_never_checked_less_often(r, c):
    out = intervals(r, c)
    ordered = sorted(r, key=r.get)
    for slower, faster in zip(ordered, ordered[1:]):
        assert out[faster] <= out[slower] + dt.timedelta(microseconds=1)


def test_equal_rates_share_equally_and_the_default_costs_a_fixed_15_minute_check():
    out = intervals({i: 2.0 for i in range(10)}, adaptive.default_checks_per_day(10))
    assert {round(i.total_seconds()) for i in out.values()} == {15 * 60}


def test_a_budget_left_unused_by_a_clamped_watch_goes_to_the_others():
    # A hot handle is clamped at one check a minute (1440 a day); the rest is the quiet one's.
    out = intervals({"hot": 1e6, "quiet": 1e-6}, 1440 + 24)
    assert out["hot"] == MIN_INTERVAL
    assert round(out["quiet"].total_seconds()) == 3600


def test_busy_handles_are_checked_more_often_in_proportion_to_the_square_root_of_their_rate():
    out = intervals({"busy": 100.0, "quiet": 1.0}, 110.0)
    assert round(out["quiet"] / out["busy"], 6) == 10.0


def test_follow_rate_counts_the_recent_journal_with_a_weak_prior():
    recent = [NOW - dt.timedelta(hours=h) for h in range(1, 71)]  # 70 in the last 3 days
    old = [NOW - dt.timedelta(days=20)] * 50                       # outside the horizon
    assert follow_rate(recent + old, NOW) == (70 + 1) / 14
    assert follow_rate([], NOW) == 1 / 14
    assert follow_rate([NOW + dt.timedelta(minutes=1)], NOW) == 1 / 14  # not yet: ignored


def test_next_check_is_an_interval_on_and_never_in_the_past():
    assert next_check(NOW, dt.timedelta(minutes=5), NOW) == NOW + dt.timedelta(minutes=5)
    assert next_check(NOW - dt.timedelta(hours=1), dt.timedelta(minutes=5), NOW) == NOW
