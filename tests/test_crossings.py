"""The pure "followed by many" rule (integration/crossings.py) against a brute-force model,
over random follow streams split into random batches (polls). Derandomized in CI (profile
"ci", tests/conftest.py)."""
from __future__ import annotations

import datetime as dt

from hypothesis import example, given
from hypothesis import strategies as st

from integration.crossings import Follow, crossings, window_start

T0 = dt.datetime(2026, 11, 1)
HANDLES = ["ana", "bob", "cy", "dee"]
ACCOUNTS = ["x", "y", "z"]


def model(stream: list[Follow], min_handles: int, within: dt.timedelta, fired: set[str]) -> list[tuple[int, tuple]]:
    """By definition: for each follow in order, the distinct handles among the follows of its
    account up to it detected at or after (its time - within), ordered by first follow; the
    first follow reaching min_handles fires, once per account."""
    done, out = set(fired), []
    for i, follow in enumerate(stream):
        if follow.account_id in done:
            continue
        counted = sorted((f for f in stream[:i + 1] if f.account_id == follow.account_id
                          and f.at >= follow.at - within), key=lambda f: f.at)
        handles = tuple(dict.fromkeys(f.handle for f in counted))
        if len(handles) >= min_handles:
            done.add(follow.account_id)
            out.append((i, handles))
    return out


def in_batches(stream: list[Follow], cuts: list[int], min_handles: int, within: dt.timedelta,
               fired: set[str]) -> list[tuple[int, tuple]]:
    """As the shell runs it: batch after batch, each with only the window's history."""
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    done, out = set(fired), []
    for start, end in zip(bounds, bounds[1:]):
        batch = stream[start:end]
        since = window_start(batch, within)
        history = [f for f in stream[:start] if f.at >= since]
        for crossing in crossings(history, batch, min_handles=min_handles, within=within, fired=done):
            done.add(crossing.follow.account_id)
            out.append((crossing.follow.ref, crossing.handles))
    return out


@st.composite
def streams(draw):
    n = draw(st.integers(0, 25))
    # Times mostly increasing (detection order), sometimes out of order (two watches' commits).
    hours, stream = 0, []
    for i in range(n):
        hours = max(0, hours + draw(st.integers(-3, 60)))
        stream.append(Follow(draw(st.sampled_from(ACCOUNTS)), draw(st.sampled_from(HANDLES)),
                             T0 + dt.timedelta(hours=hours), ref=i))
    return stream


@given(streams(), st.integers(2, 4), st.integers(1, 5), st.lists(st.integers(0, 30), max_size=8),
       st.sets(st.sampled_from(ACCOUNTS), max_size=1))
@example(  # two handles 8 days apart with a 7-day window: no crossing; a third inside it: one
    [Follow("x", "ana", T0, 0), Follow("x", "bob", T0 + dt.timedelta(days=8), 1),
     Follow("x", "cy", T0 + dt.timedelta(days=9), 2), Follow("x", "dee", T0 + dt.timedelta(days=9), 3)],
    2, 7, [2], set())
def test_crossings_match_the_model_whatever_the_batches(stream, min_handles, days, cuts, fired):
    within = dt.timedelta(days=days)
    expected = model(stream, min_handles, within, fired)
    assert in_batches(stream, cuts, min_handles, within, fired) == expected
    assert in_batches(stream, [], min_handles, within, fired) == expected  # one poll
    assert in_batches(stream, list(range(len(stream))), min_handles, within, fired) == expected  # one per follow
    # Once per account, never for one fired before, never below the threshold.
    accounts = [stream[i].account_id for i, _ in expected]
    assert len(accounts) == len(set(accounts)) and not set(accounts) & fired
    assert all(len(handles) >= min_handles and len(set(handles)) == len(handles) for _, handles in expected)


def test_a_known_crossing():
    stream = [Follow("x", "ana", T0, 1), Follow("x", "ana", T0 + dt.timedelta(hours=1), 2),
              Follow("x", "bob", T0 + dt.timedelta(hours=2), 3), Follow("x", "cy", T0 + dt.timedelta(hours=3), 4)]
    found = crossings([], stream, min_handles=2, within=dt.timedelta(days=7), fired=())
    assert [(c.follow.ref, c.handles) for c in found] == [(3, ("ana", "bob"))]
    assert crossings([], stream, min_handles=2, within=dt.timedelta(days=7), fired={"x"}) == []
    assert crossings([], stream[:2], min_handles=2, within=dt.timedelta(days=7), fired=()) == []
