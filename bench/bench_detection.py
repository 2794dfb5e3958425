"""Benchmark of the pure new-follow detection (a script, not a test).

    .venv/bin/python bench/bench_detection.py

1. Time: the whole detection (every `step` call) for a watch with 10,000 known
   ids and a burst of 50 new follows, page size 30. Upstream answers are
   prepared in advance, so only the detection is timed.
2. Credits: requests per refresh, and missed / false follows, for our detector
   versus two naive pollers, on a list of 1,000 follows (page size 30):
   A reads page 1 every poll and diffs its ids with the previous page 1;
   B reads every page every poll and diffs with every id it has seen.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from integration.detection import NeedVerify, Outcome, Page, WatchState, step  # noqa: E402
from tests import test_detection  # noqa: E402

P = 30
PAGE_CAP = 10


class Upstream(test_detection.Upstream):
    """The tests' in-memory following list (one model for both), with this bench's page size."""

    def page(self, min_time: int | None, count: int = P) -> Page:
        return super().page(min_time, count)


# ---------------------------------------------------------------- pollers


class Ours:
    name = "ours"

    def __init__(self):
        self.state, self.known, self.truncated = WatchState(), set(), False

    def poll(self, up: Upstream) -> tuple[set[str], int]:
        pages, verify, n = [], None, 0
        while not isinstance(r := step(self.state, self.known, pages, verify, page_cap=PAGE_CAP), Outcome):
            n += 1
            if isinstance(r, NeedVerify):
                verify = up.page(r.min_time)
            else:
                pages.append(up.page(r.min_time))
        self.state, self.truncated = r.state, r.truncated
        self.known |= r.seen_ids
        return {a["id"] for a in r.new_follows}, n


class NaiveA:
    name = "A: page 1 diff"

    def __init__(self):
        self.previous: set[str] | None = None

    def poll(self, up):
        ids = {a["id"] for a in up.page(None).accounts}
        new = set() if self.previous is None else ids - self.previous
        self.previous = ids
        return new, 1


class NaiveB:
    name = "B: all pages"

    def __init__(self):
        self.seen: set[str] | None = None

    def poll(self, up):
        ids, n, min_time = set(), 0, None
        while True:
            page = up.page(min_time)
            n += 1
            ids |= {a["id"] for a in page.accounts}
            if not page.has_more:
                break
            min_time = page.min_cursor
        new = set() if self.seen is None else ids - self.seen
        self.seen = ids if self.seen is None else self.seen | ids
        return new, n


POLLERS = (Ours, NaiveA, NaiveB)

# ---------------------------------------------------------------- scenarios
# Each mutates a fresh list of 1,000 follows after every poller took its baseline,
# and returns the ids a correct detector must announce.


def new(k):
    return lambda up: {up.follow_new() for _ in range(k)}


def unfollow_newest(idx):
    def run(up):
        for uid in [up.newest(max(idx) + 1)[i] for i in idx]:
            up.unfollow(uid)
        return set()

    return run


def refollow_plus_new(up):
    again = up.newest(P)[7]
    out = {up.follow_new()}
    up.unfollow(again)
    out |= {up.follow_new(), up.follow_new()}
    up.follow(again)
    return out | {up.follow_new()}


def refollow_anchor(up):
    up.follow(up.newest(1)[0])
    return set()


def hidden_boundary(up):
    anchor, *rest = up.newest(P)
    for uid in rest:
        up.unfollow(uid)
    out = {up.follow_new()}
    up.follow(anchor)
    return out


def mix(up):
    out = {up.follow_new() for _ in range(5)}
    unfollow_newest([0, 3, 8, 20, 40])(up)
    return out & set(up.time_of)  # the newest unfollowed may include new ones


SCENARIOS = [
    ("nothing changed", lambda up: set()),
    ("5 new", new(5)),
    ("29 new (P-1)", new(29)),
    ("30 new (P)", new(30)),
    ("45 new", new(45)),
    ("90 new (3P)", new(90)),
    ("400 new (> cap 10 pages)", new(400)),
    ("3 unfollows incl. newest", unfollow_newest([0, 4, 11])),
    ("30 unfollows (whole page 1)", unfollow_newest(list(range(30)))),
    ("re-follow known + 4 new", refollow_plus_new),
    ("re-follow the newest", refollow_anchor),
    ("hidden boundary (verify)", hidden_boundary),
    ("5 new + 5 unfollows", mix),
]


def run_scenarios():
    head = f"{'scenario':30s}" + "".join(f"| {p.name:>24s} " for p in POLLERS)
    print(head)
    print(f"{'':30s}" + "| requests missed false     " * len(POLLERS))
    print("-" * len(head))
    # Baseline row: the first poll of a fresh watch.
    up = Upstream(1000)
    print(f"{'baseline (first poll)':30s}" + "".join(f"| {p().poll(up)[1]:8d} {0:6d} {0:5d}     " for p in POLLERS))
    for name, mutate in SCENARIOS:
        up = Upstream(1000)
        pollers = [p() for p in POLLERS]
        for p in pollers:
            p.poll(up)
        expected = mutate(up)
        row = f"{name:30s}"
        for p in pollers:
            got, n = p.poll(up)
            flag = " T" if getattr(p, "truncated", False) else "  "
            row += f"| {n:8d} {len(expected - got):6d} {len(got - expected):5d}{flag}   "
        print(row)
    print("(T = our refresh reported truncated=True: the newest 300 were announced)")


def run_day(seed=1, polls=200):
    """Random activity between polls: follows, unfollows, re-follows of known accounts."""
    rnd = random.Random(seed)
    up = Upstream(1000)
    pollers = [p() for p in POLLERS]
    for p in pollers:
        p.poll(up)
    created: list[str] = []
    totals = {p.name: [0, 0, 0] for p in pollers}
    for _ in range(polls):
        expected = set()
        for _ in range(rnd.choice([0, 0, 0, 1, 1, 2, 3, 8, 40])):
            expected.add(up.follow_new())
        for _ in range(rnd.choice([0, 0, 0, 1, 2, 5])):
            up.unfollow(rnd.choice(up.rows[-60:])[1])
        seen = [u for _, u in up.rows[-40:-10] if u in pollers[0].known]
        if seen and rnd.random() < 0.2:  # re-follow an account the watch has seen: no event
            up.follow(rnd.choice(seen))
        expected &= set(up.time_of)
        created += expected
        for p in pollers:
            got, n = p.poll(up)
            t = totals[p.name]
            t[0] += n
            t[1] += len(expected - got)
            t[2] += len(got - expected)
    print(f"\n{polls} polls of random activity on a list of ~1,000 follows (seed {seed}), "
          f"{len(created)} genuine new follows:")
    for name, (n, missed, false) in totals.items():
        print(f"  {name:16s} requests {n:6d} ({n / polls:5.2f}/poll)  missed {missed:4d}  false {false:4d}")


def run_timing(runs=2000):
    up = Upstream(10_000)
    state = WatchState(up.time_of[up.newest(1)[0]], tuple(up.newest(P)))
    known = set(up.time_of)  # 10,000 known ids
    for _ in range(50):
        up.follow_new()
    answers = {None: up.page(None)}
    for t, _ in up.rows[-120:]:
        answers[t] = up.page(t)

    def detect():
        pages, verify, n = [], None, 0
        while not isinstance(r := step(state, known, pages, verify), Outcome):
            n += 1
            if isinstance(r, NeedVerify):
                verify = answers[r.min_time]
            else:
                pages.append(answers[r.min_time])
        return r, n

    r, n = detect()
    assert len(r.new_follows) == 50
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        detect()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    print(f"Detection time, 10,000 known ids, burst of 50, P={P}: {n} requests, "
          f"{len(r.new_follows)} events, {runs} runs")
    print(f"  median {statistics.median(samples):.4f} ms   p99 {samples[int(runs * 0.99) - 1]:.4f} ms   "
          f"max {samples[-1]:.4f} ms   (budget: well under 5 ms)\n")


if __name__ == "__main__":
    run_timing()
    print(f"Requests per refresh and errors, list of 1,000 follows, P={P}, page_cap={PAGE_CAP}:")
    run_scenarios()
    run_day()
