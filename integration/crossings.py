""""Followed by many": when an account crosses a crowd's threshold. PURE, no I/O.

A crowd fires for an account when at least `min_handles` DISTINCT handles of the crowd have
a new follow of it detected within `within` of each other: for a candidate follow detected
at t, the follows counted are those seen up to it (in the order the crowd evaluates them)
detected at or after t - within. The crossing is the first follow that makes the count
reach `min_handles`; an account fires once (`fired` holds those that already did, or that
were over the threshold when the crowd was made).

Follows are evaluated in batches (one per poll, or per worker refresh). The answer does not
depend on how the follows are split into batches, as long as each batch comes with the
crowd's earlier follows of the accounts concerned (`history`): tests/test_crossings.py
checks this against a brute-force model.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Follow:
    account_id: str
    handle: str
    at: dt.datetime  # detectedAt
    ref: int = 0     # the caller's reference (the journal row's id)


@dataclass(frozen=True)
class Crossing:
    follow: Follow               # the follow that made the count reach the threshold
    handles: tuple[str, ...]     # the handles counted, in the order they followed


def window_start(batch: Sequence[Follow], within: dt.timedelta) -> dt.datetime | None:
    """The earliest detection time of the history a batch needs (None: empty batch)."""
    return min(f.at for f in batch) - within if batch else None


def crossings(history: Iterable[Follow], batch: Sequence[Follow], *, min_handles: int,
              within: dt.timedelta, fired: Iterable[str]) -> list[Crossing]:
    """The crossings in `batch` (in its order), given the follows evaluated before it."""
    seen: dict[str, list[Follow]] = {}
    concerned = {f.account_id for f in batch}
    for follow in history:
        if follow.account_id in concerned:
            seen.setdefault(follow.account_id, []).append(follow)
    done = set(fired)
    out: list[Crossing] = []
    for follow in batch:
        follows = seen.setdefault(follow.account_id, [])
        follows.append(follow)
        if follow.account_id in done:
            continue
        handles = _handles_within(follows, follow.at - within)
        if len(handles) >= min_handles:
            done.add(follow.account_id)
            out.append(Crossing(follow, handles))
    return out


def _handles_within(follows: list[Follow], since: dt.datetime) -> tuple[str, ...]:
    """Distinct handles with a follow at or after `since`, in the order they first followed."""
    ordered = sorted((f for f in follows if f.at >= since), key=lambda f: f.at)  # stable: ties keep seen order
    return tuple(dict.fromkeys(f.handle for f in ordered))
