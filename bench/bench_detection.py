"""Benchmark of the pure new-follow detection (a script, not a test).

    .venv/bin/python bench/bench_detection.py [--histories N]

1. Time: the whole detection (every `step` call) for a watch with 10,000 known
   ids and a burst of 50 new follows, page size 30 (upstream answers prepared).
2. Credits: requests per refresh, missed and false follows, for the current
   detection, version 1 (bench/detection_v1.py) and two naive pollers, on a list of
   1,000 follows (page size 30): A diffs page 1 with the previous page 1; B reads
   every page every poll and diffs with every id it has seen.
3. The deviation matrix (issue: exact detection): for each upstream deviation, over
   random histories with follows sharing seconds, false and missed follows, upstream
   requests per refresh and errors (exceptions, runaway paging), version 1 vs current.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import detection_v1 as v1  # noqa: E402
from integration.detection import NeedPage, NeedVerify, Outcome, WatchState, step  # noqa: E402
from tests.upstream_model import DEVIATIONS, Upstream, apply  # noqa: E402

P = 30
PAGE_CAP = 10
RUNAWAY = 50  # requests in one refresh that count as an endless paging loop


# ---------------------------------------------------------------- detectors


class Current:
    name = "current"

    def __init__(self, page_size=P, page_cap=PAGE_CAP):
        self.p, self.cap = page_size, page_cap
        self.state, self.known, self.truncated = WatchState(), set(), False

    def poll(self, up: Upstream) -> tuple[list[str], int]:
        pages, verifies, n = [], [], 0
        while not isinstance(r := step(self.state, self.known, pages, verifies, page_cap=self.cap,
                                       page_size=self.p), Outcome):
            n += 1
            if n > RUNAWAY:
                raise RuntimeError("runaway paging")
            page = up.page(r.min_time, getattr(r, "count", None) or self.p)
            (verifies if isinstance(r, NeedVerify) else pages).append(page)
        self.state, self.truncated = r.state, r.truncated
        self.known |= r.seen_ids
        return [a["id"] for a in r.new_follows], n


class Version1:
    name = "version 1"

    def __init__(self, page_size=P, page_cap=PAGE_CAP):
        self.p, self.cap = page_size, page_cap
        self.state, self.known, self.truncated = v1.WatchState(), set(), False

    def poll(self, up: Upstream) -> tuple[list[str], int]:
        pages, verify, n = [], None, 0
        while not isinstance(r := v1.step(self.state, self.known, pages, verify, page_cap=self.cap), v1.Outcome):
            n += 1
            if n > RUNAWAY:
                raise RuntimeError("runaway paging")
            if isinstance(r, v1.NeedVerify):
                verify = up.page(r.min_time, self.p)
            else:
                pages.append(up.page(r.min_time, self.p))
        self.state, self.truncated = r.state, r.truncated
        self.known |= r.seen_ids
        return [a["id"] for a in r.new_follows], n


class NaiveA:
    name = "A: page 1 diff"

    def __init__(self):
        self.previous: set[str] | None = None
        self.truncated = False

    def poll(self, up):
        ids = [a["id"] for a in up.page(None, P).accounts]
        new = [] if self.previous is None else [i for i in ids if i not in self.previous]
        self.previous = set(ids)
        return new, 1


class NaiveB:
    name = "B: all pages"

    def __init__(self):
        self.seen: set[str] | None = None
        self.truncated = False

    def poll(self, up):
        ids, n, min_time = [], 0, None
        while True:
            page = up.page(min_time, P)
            n += 1
            ids += [a["id"] for a in page.accounts]
            if not page.has_more or n > 2000:
                break
            min_time = page.min_cursor
        new = [] if self.seen is None else [i for i in ids if i not in self.seen]
        self.seen = set(ids) if self.seen is None else self.seen | set(ids)
        return new, n


POLLERS = (Current, Version1, NaiveA, NaiveB)

# ---------------------------------------------------------------- scenarios
# Each mutates a fresh list of 1,000 follows after every poller took its baseline,
# and returns the ids a correct detector must announce.


def new(k, same_second=False):
    return lambda up: {up.follow_new(same_second=same_second) for _ in range(k)}


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
    return out & set(up.key_of)  # the newest unfollowed may include new ones


SCENARIOS = [
    ("nothing changed", lambda up: set()),
    ("5 new", new(5)),
    ("5 new, same second as the last seen", new(5, same_second=True)),
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
    head = f"{'scenario':38s}" + "".join(f"| {p.name:>22s} " for p in POLLERS)
    print(head)
    print(f"{'':38s}" + "| requests missed false   " * len(POLLERS))
    print("-" * len(head))
    up = Upstream(1000)
    print(f"{'baseline (first poll)':38s}" + "".join(f"| {p().poll(up)[1]:8d} {0:6d} {0:5d}   " for p in POLLERS))
    for name, mutate in SCENARIOS:
        up = Upstream(1000)
        pollers = [p() for p in POLLERS]
        for p in pollers:
            p.poll(up)
        expected = mutate(up)
        row = f"{name:38s}"
        for p in pollers:
            got, n = p.poll(up)
            flag = "T" if p.truncated else " "
            row += f"| {n:8d} {len(expected - set(got)):6d} {len(set(got) - expected):5d}{flag}  "
        print(row)
    print("(T = the refresh reported truncated=True: only the newest were announced, and it says so)")


def run_day(seed=1, polls=200):
    """Random activity between polls: follows (some in the same second), unfollows, re-follows."""
    rnd = random.Random(seed)
    up = Upstream(1000)
    pollers = [p() for p in POLLERS]
    for p in pollers:
        p.poll(up)
    created = 0
    totals = {p.name: [0, 0, 0] for p in pollers}
    for _ in range(polls):
        expected = set()
        same = rnd.random() < 0.3
        for _ in range(rnd.choice([0, 0, 0, 1, 1, 2, 3, 8, 40])):
            expected.add(up.follow_new(same_second=same))
        for _ in range(rnd.choice([0, 0, 0, 1, 2, 5])):
            up.unfollow(rnd.choice(up.rows[-60:])[2])
        seen = [u for _, _, u in up.rows[-40:-10] if u in pollers[0].known]
        if seen and rnd.random() < 0.2:  # re-follow an account the watch has seen: no event
            up.follow(rnd.choice(seen))
        expected &= set(up.key_of)
        created += len(expected)
        for p in pollers:
            got, n = p.poll(up)
            t = totals[p.name]
            t[0] += n
            t[1] += len(expected - set(got))
            t[2] += len(set(got) - expected)
    print(f"\n{polls} polls of random activity on a list of ~1,000 follows (seed {seed}, 30% of bursts "
          f"in the second of the previous follow), {created} genuine new follows:")
    for name, (n, missed, false) in totals.items():
        print(f"  {name:16s} requests {n:6d} ({n / polls:5.2f}/poll)  missed {missed:4d}  false {false:4d}")


# ---------------------------------------------------------------- the deviation matrix

OPS = ("follow", "follow_same_second", "unfollow", "refollow", "unfollow_newest", "refollow_newest", "refresh")


def random_history(rnd: random.Random, length: int):
    out = []
    for _ in range(length):
        op = rnd.choice(OPS)
        arg = {"follow": rnd.randint(1, 4), "follow_same_second": rnd.randint(1, 12), "unfollow_newest": rnd.randint(1, 12),
               "refollow_newest": rnd.randint(0, 8), "refresh": 0}.get(op, rnd.randint(0, 10_000))
        out.append((op, arg))
    return out + [("refresh", 0)]


def replay(detector, up: Upstream, history) -> dict:
    """The oracle of tests/upstream_model.replay, for any detector; exceptions are errors."""
    counts = dict(false=0, missed=0, refreshes=0, requests=0, errors=0)
    try:
        detector.poll(up)
    except Exception:  # noqa: BLE001 - counted: the detection must never crash
        counts["errors"] += 1
        return counts
    since = baseline = up.serial
    known, emitted, ever = set(detector.known), set(), list(up.key_of)
    for op, arg in history:
        if op != "refresh":
            apply(up, op, arg, ever)
        else:
            expected = [u for t, rank, u in reversed(up.rows) if abs(rank) > since and u not in known]
            try:
                got, n = detector.poll(up)
            except Exception:  # noqa: BLE001
                counts["errors"] += 1
                continue
            since = up.serial
            counts["refreshes"] += 1
            counts["requests"] += n
            counts["false"] += sum(1 for x in got if x in emitted or x not in up.key_of
                                   or abs(up.key_of[x][1]) <= baseline)
            counts["missed"] += sum(1 for x in expected if x not in got)
            emitted |= set(got)
            known = set(detector.known)
    return counts


def run_matrix(histories: int, seed: int = 7):
    print(f"\nDeviation matrix: {histories} random histories each (0-30 accounts, page size 1-10, follows "
          f"sharing seconds, either tie order), page cap {PAGE_CAP}.")
    print(f"{'deviation':22s}| {'version 1: false  missed  req/refresh errors':44s}| "
          f"{'current: false  missed  req/refresh errors':42s}")
    for deviation in ("none", *DEVIATIONS):
        row = f"{deviation:22s}"
        for cls in (Version1, Current):
            total = dict(false=0, missed=0, refreshes=0, requests=0, errors=0)
            rnd = random.Random(seed)
            for _ in range(histories):
                size, page_size = rnd.randint(0, 30), rnd.randint(1, 10)
                ties = rnd.choice(["newest", "oldest"])
                same = rnd.random() < 0.5
                history = random_history(rnd, rnd.randint(0, 40))
                up = Upstream(ties=ties, deviations=frozenset(() if deviation == "none" else (deviation,)))
                for i in range(size):
                    up.follow_new(same_second=same and i > 0)
                counts = replay(cls(page_size, PAGE_CAP), up, history)
                for k in total:
                    total[k] += counts[k]
            per = total["requests"] / max(total["refreshes"], 1)
            row += f"| {total['false']:14d} {total['missed']:7d} {per:11.2f} {total['errors']:6d}    "
        print(row)


def run_timing(runs=2000):
    up = Upstream(10_000)
    state = WatchState(up.time_of(up.newest(1)[0]), tuple(up.newest(P)))
    known = set(up.key_of)  # 10,000 known ids
    for _ in range(50):
        up.follow_new()
    answers = {}

    def detect():
        pages, verifies, n = [], [], 0
        while not isinstance(r := step(state, known, pages, verifies, page_size=P), Outcome):
            n += 1
            ask = (r.min_time, getattr(r, "count", None) or P)
            if ask not in answers:
                answers[ask] = up.page(*ask)
            (verifies if isinstance(r, NeedVerify) else pages).append(answers[ask])
        return r, n

    r, n = detect()
    assert len(r.new_follows) == 50 and isinstance(NeedPage(None), NeedPage)
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
    parser = argparse.ArgumentParser()
    parser.add_argument("--histories", type=int, default=300, help="random histories per matrix cell")
    args = parser.parse_args()
    run_timing()
    print(f"Requests per refresh and errors, list of 1,000 follows, P={P}, page_cap={PAGE_CAP}:")
    run_scenarios()
    run_day()
    run_matrix(args.histories)
