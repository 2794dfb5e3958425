"""Unfollow detection: what it costs and how exact it is.

1. Credits. Our service (gunicorn) against the fake upstream (its own process): a handle
   following 2,000 accounts, polled through POST /v1/zapier/triggers/unfollowed. The credits
   of the recording sweep and of a later sweep are measured (X-Credits-Used, minus the poll's
   new-follow refresh); a week is then sweeps x credits, compared with a naive "read the whole
   list on every poll" at Zapier's 15-minute polling.
2. Exactness. Random follow/unfollow/re-follow histories on the upstream model
   (tests/upstream_model.py), including lists deeper than the readable cap, swept with the
   pure rule (integration/unfollows.py): unfollows announced, false ones, and the missed ones,
   split into "pushed": it would now stand beyond what could be read, and "readable": within
   it (what the rule's conservative bound gives up); "free": found by an ordinary refresh.
3. A week, on the model: a handle following 2,000 accounts polled every 15 minutes (each poll
   a refresh of one 30-account page), a follow about every 2.5 hours, unfollows among its 30
   newest and anywhere, re-follows; swept every 24 or 168 hours, with and without the free
   detection in refreshes. Credits per week, unfollows announced (free ones apart), false
   unfollows and follows, missed unfollows, and the mean delay from unfollow to event;
   against the naive "read the whole list on every poll".

    .venv/bin/python bench/bench_unfollows.py [HISTORIES] [WEEKS]
"""
from __future__ import annotations

import random
import sys

import requests
from sqlalchemy import text

from harness import API_KEY, FakeProcess, fresh_sqlite, service_env, start_service, stop_service
from integration.db import make_engine
from tests.unfollow_model import replay_unfollows
from tests.upstream_model import Upstream

HISTORIES = int(sys.argv[1]) if len(sys.argv) > 1 else 400
WEEKS = int(sys.argv[2]) if len(sys.argv) > 2 else 4   # simulated weeks per row of the week table
FOLLOWING = 2000
POLLS_PER_WEEK = 7 * 24 * 4  # Zapier polls every 15 minutes
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def measured_sweeps() -> tuple[int, int, int]:
    """(credits of the recording sweep, of a later sweep, of a poll with no sweep due)."""
    fake = FakeProcess()
    seeded = fake.control("handles/creator/seed", {"n": FOLLOWING})
    database = fresh_sqlite()
    service = start_service(database, fake.url, workers=1, threads=8,
                            extra_env=service_env(REFRESH_WINDOW_SECONDS="0"))
    url = service.url + "/v1/zapier/triggers/unfollowed"
    try:
        def poll() -> int:
            response = requests.post(url, json={"handle": "creator", "sweepEvery": 24}, headers=HEADERS, timeout=120)
            assert response.status_code == 200, response.text
            return int(response.headers.get("X-Credits-Used", 0))

        first = poll()
        idle = poll()
        # One of the 10 newest unfollowed: the next poll (no sweep due) sees it in its own page.
        fake.control("handles/creator/unfollow", {"id": seeded[3]["user"]["id"]})
        response = requests.post(url, json={"handle": "creator", "sweepEvery": 24}, headers=HEADERS, timeout=120)
        found = [item["id"] for item in response.json()] == [str(seeded[3]["user"]["id"])]
        print(f"  an unfollow among the 10 newest, no sweep due: announced by the poll's refresh: {found}, "
              f"X-Credits-Used {response.headers.get('X-Credits-Used')}")
        fake.control("handles/creator/unfollow", {"id": seeded[500]["user"]["id"]})
        engine = make_engine(database)
        with engine.begin() as conn:  # a day passes
            conn.execute(text("UPDATE unfollow_sweeps SET next_sweep_at = '2000-01-01 00:00:00'"))
        engine.dispose()
        later = poll()
        return first - idle, later - idle, idle
    finally:
        stop_service(service)
        fake.stop()


def random_history(rng: random.Random, length: int) -> list[tuple[str, int]]:
    ops = []
    for _ in range(length):
        kind = rng.random()
        if kind < 0.30:
            ops.append((rng.choice(["follow", "follow_same_second"]), rng.randint(1, 15)))
        elif kind < 0.55:
            ops.append(("unfollow", rng.randint(0, 10**6)))
        elif kind < 0.65:
            ops.append(("refollow", rng.randint(0, 10**6)))
        elif kind < 0.70:
            ops.append(("unfollow_newest", rng.randint(1, 5)))
        elif kind < 0.85:
            ops.append(("refresh", 0))
        else:
            ops.append(("sweep", rng.choice([0, 0, 0, 1, 3])))  # odd: interrupted after k % 4 pages
    return ops


def exactness() -> None:
    print(f"\n{HISTORIES} random histories per row (40 operations; sweeps of 10-account pages, some interrupted "
          "by an upstream failure)")
    print(f"{'list':34}{'sweeps':>8}{'announced':>11}{'free':>6}{'false':>7}{'false follows':>15}"
          f"{'missed: pushed':>16}{'readable':>10}{'between sweeps':>16}")
    rows = [("80 accounts, all readable", 80, None, None), ("150 accounts, readable to 100", 150, 100, None),
            ("300 accounts, readable to 60", 300, 60, None),
            ("150, neighbours swapped (unordered)", 150, None, "unordered")]
    for label, n, depth, deviation in rows:
        rng = random.Random(n)
        totals: dict[str, int] = {}
        for _ in range(HISTORIES):
            deviations = frozenset(d for d in ("depth_cap_100" if depth else None, deviation) if d)
            up = Upstream(n, deviations=deviations, depth_cap=depth or 100, ties=rng.choice(["newest", "oldest"]))
            counts = replay_unfollows(up, random_history(rng, 40), count=10, page_cap=100)
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
        print(f"{label:34}{totals['complete']:>8}{totals['unfollowed']:>11}{totals['free']:>6}{totals['false']:>7}"
              f"{totals['false_follows']:>15}{totals['missed_pushed']:>16}{totals['missed_readable']:>10}{totals['missed_between']:>16}")


POLLS_PER_DAY = 24 * 4


def week_history(rng: random.Random, sweep_every: int) -> list[tuple[str, int]]:
    """A week of 15-minute polls on a 2,000-account list; a sweep every `sweep_every` hours
    (the replay adds the one that ends the week)."""
    ops: list[tuple[str, int]] = []
    for tick in range(7 * POLLS_PER_DAY):
        if tick % (sweep_every * 4) == 0:
            ops.append(("sweep", 0))
        r = rng.random()
        if r < 0.10:
            ops.append(("follow", 1))                           # about 10 a day
        elif r < 0.12:
            ops.append(("unfollow", -1 - rng.randrange(30)))    # one of the 30 newest (rows are oldest first)
        elif r < 0.14:
            ops.append(("unfollow", rng.randrange(10**6)))      # anywhere in the list
        elif r < 0.15:
            ops.append(("refollow", rng.randrange(10**6)))
        ops.append(("refresh", 0))
    return ops


def week_table(first: int, later: int, idle: int) -> None:
    print(f"\nA week of a handle following {FOLLOWING} accounts, polled every 15 minutes "
          f"({WEEKS} simulated weeks per row, upstream model; per week)")
    print(f"{'':30}{'credits':>9}{'unfollows':>11}{'free':>6}{'false':>7}{'false follows':>15}"
          f"{'missed':>8}{'mean delay h':>14}")
    for every in (24, 168):
        for free in (False, True):
            totals: dict[str, int] = {}
            for week in range(WEEKS):
                up = Upstream(FOLLOWING)
                counts = replay_unfollows(up, week_history(random.Random(week), every), count=100,
                                          page_cap=100, refresh_count=30, free=free)
                for key, value in counts.items():
                    totals[key] = totals.get(key, 0) + value
            # The recording sweep (once per watch, not per week) is left out.
            credits = (totals["refresh_credits"] + totals["credits"]) / WEEKS - first
            missed = totals["missed_readable"] + totals["missed_pushed"] + totals["missed_between"]
            delay = totals["delay"] / 4 / max(totals["unfollowed"], 1)
            label = f"sweepEvery {every}, " + ("free in refreshes" if free else "sweeps only")
            print(f"{label:30}{credits:>9.0f}{totals['unfollowed'] / WEEKS:>11.1f}{totals['free'] / WEEKS:>6.1f}"
                  f"{totals['false']:>7}{totals['false_follows']:>15}{missed / WEEKS:>8.1f}{delay:>14.1f}")
    naive = POLLS_PER_WEEK * first
    print(f"{'naive: whole list every poll':30}{naive:>9}{'all':>11}{'-':>6}{0:>7}{0:>15}{0:>8}{0.25:>14.2f}")
    print(f"  (service, measured: a poll {idle} credit, a later sweep {later}; naive = {POLLS_PER_WEEK} polls x "
          f"{first} pages. Missed: unfollowed before any sweep or refresh could prove it, e.g. followed and "
          "unfollowed between two sweeps, or a refresh's follow bound too wide.)")


def refresh_cpu() -> None:
    """What free detection adds to a refresh of a watch with unfollow listeners: the record
    (2,000 accounts as the fake serves them) decompressed and judged against one page, and
    written back when it moved on (a new follow)."""
    import json
    import time
    import zlib

    from fakeupstream.accounts import make_account
    from integration.accounts import flatten
    from integration.detection import Page
    from integration.unfollows import Record, seen_in_refresh

    accounts = [flatten(make_account(i)) for i in range(FOLLOWING)]
    blob = zlib.compress(json.dumps(accounts, separators=(",", ":")).encode())
    page = Page(tuple(accounts[:30]), 1_700_000_000, 1_600_000_000, True)
    runs = 50
    started = time.perf_counter()
    for _ in range(runs):
        record = Record(tuple(json.loads(zlib.decompress(blob))), 1_700_000_001)
        seen_in_refresh(record, [page])
    judged = (time.perf_counter() - started) / runs * 1000
    started = time.perf_counter()
    for _ in range(runs):
        zlib.compress(json.dumps(accounts, separators=(",", ":")).encode())
    written = (time.perf_counter() - started) / runs * 1000
    print(f"\nfree detection per refresh, record of {FOLLOWING} accounts ({len(blob) // 1024} KiB compressed): "
          f"{judged:.1f} ms to read and judge; {written:.1f} ms more when the record moves on (a new follow)")


def main() -> None:
    first, later, idle = measured_sweeps()
    naive = first  # reading the whole list once, as the recording sweep does
    print(f"handle following {FOLLOWING} accounts (fake upstream, 100 accounts per page)")
    print(f"  recording sweep: {first} credits; later sweep: {later} credits (the anchor page is the +1); "
          f"a poll with no sweep due: {idle} credit (the new-follow refresh)")
    print(f"{'per week':44}{'sweeps':>8}{'sweep credits':>15}{'with 15-min polls':>19}")
    for every in (24, 168):
        sweeps = 7 * 24 // every
        print(f"{'ours, sweepEvery ' + str(every):44}{sweeps:>8}{sweeps * later:>15}"
              f"{sweeps * later + POLLS_PER_WEEK * idle:>19}")
    print(f"{'naive: whole list on every 15-minute poll':44}{POLLS_PER_WEEK:>8}{POLLS_PER_WEEK * naive:>15}"
          f"{POLLS_PER_WEEK * naive:>19}")
    exactness()
    week_table(first, later, idle)
    refresh_cpu()


if __name__ == "__main__":
    main()
