"""An in-memory model of the upstream following list, for the detection tests and benches.

Follow times are whole seconds, so several follows may share one (``follow(same_second=True)``);
within a second the order is stable (newest first, or oldest first with ``ties="oldest"``).
``deviations`` switch on the upstream behaviours that break the documented reading
(the same names as the fake upstream's switches), so one model drives the property
tests, the deviation matrix and the benches.
"""
from __future__ import annotations

import bisect

from integration.detection import NeedPage, NeedVerify, Outcome, Page, WatchState, step

DEVIATIONS = (
    "inclusive_min_time", "millisecond_cursors", "zero_cursors", "missing_cursors", "constant_cursors",
    "unordered_cursors", "count_ignored_long", "count_ignored_short", "count_max_20", "has_more_always",
    "has_more_wrong", "empty_page_has_more", "duplicates", "depth_cap_100", "unordered",
)


class Upstream:
    def __init__(self, n: int = 0, start: int = 1_700_000_000, *, ties: str = "newest",
                 deviations: frozenset[str] = frozenset(), depth_cap: int = 100):
        self.clock = start
        self.serial = 0  # follow order (ties inside a second are ordered by it)
        self.rows: list[tuple[int, int, str]] = []  # (time, rank, id) ascending = oldest first
        self.key_of: dict[str, tuple[int, int, str]] = {}
        self.returned: set[str] = set()  # every id any page ever carried
        self.ties = ties
        self.deviations = frozenset(deviations)
        self.depth_cap = depth_cap
        self.requests = 0
        for _ in range(n):
            self.follow_new()

    # ---------------------------------------------------------------- the list
    def follow_new(self, *, same_second: bool = False) -> str:
        self.serial += 1
        uid = f"u{self.serial}"
        self.follow(uid, same_second=same_second)
        return uid

    def follow(self, uid: str, *, same_second: bool = False) -> None:
        """Follow, or re-follow (moves the account to the top with a new time)."""
        if uid in self.key_of:
            self.unfollow(uid)
        if not same_second:
            self.clock += 1
        self.serial += 1
        rank = self.serial if self.ties == "newest" else -self.serial
        key = (self.clock, rank, uid)
        bisect.insort(self.rows, key)
        self.key_of[uid] = key

    def unfollow(self, uid: str) -> None:
        key = self.key_of.pop(uid)
        del self.rows[bisect.bisect_left(self.rows, key)]

    def newest(self, k: int | None = None) -> list[str]:
        ids = [uid for _, _, uid in reversed(self.rows)]
        return ids if k is None else ids[:k]

    def time_of(self, uid: str) -> int:
        return self.key_of[uid][0]

    def tick(self) -> int:
        """The moment of a refresh; later follows get this second or later."""
        return self.clock

    # ---------------------------------------------------------------- one request
    def page(self, min_time: int | None, count: int | None) -> Page:
        self.requests += 1
        dev = self.deviations
        scale = 1000 if "millisecond_cursors" in dev else 1
        rows = self.rows
        if "depth_cap_100" in dev:
            rows = rows[-self.depth_cap:]
        count = asked = count or 30
        if "count_ignored_long" in dev:
            count = 50
        elif "count_ignored_short" in dev:
            count = min(count, 7)
        elif "count_max_20" in dev:
            count = min(count, 20)
        if min_time is None:
            end = len(rows)
        else:
            t = min_time / scale
            if "inclusive_min_time" in dev:
                end = bisect.bisect_right(rows, (int(t // 1), float("inf"), ""))
            else:
                end = bisect.bisect_left(rows, (-(-t // 1), float("-inf"), ""))
        if "empty_page_has_more" in dev and min_time is not None and self.requests % 5 == 0:
            return Page((), 0, 0, True, len(self.rows), min_time, asked)
        chunk = rows[max(0, end - count): end][::-1]
        if "unordered" in dev:
            chunk = [chunk[i ^ 1] for i in range(len(chunk) - len(chunk) % 2)] + chunk[len(chunk) - len(chunk) % 2:]
        self.returned.update(uid for _, _, uid in chunk)
        accounts = [{"id": uid, "uniqueId": f"name_{uid}"} for _, _, uid in chunk]
        if "duplicates" in dev and accounts:
            accounts = accounts[:1] + accounts  # repeated within the page (and across, by overlap)
        has_more = end > count
        if "has_more_always" in dev:
            has_more = True
        elif "has_more_wrong" in dev and self.requests % 3 == 0:
            has_more = False
        total = len(self.rows)
        if not chunk:
            return Page((), 0, 0, has_more, total, min_time, asked)
        hi, lo = chunk[0][0] * scale, chunk[-1][0] * scale
        if "unordered" in dev:
            hi, lo = max(r[0] for r in chunk) * scale, min(r[0] for r in chunk) * scale
        if "zero_cursors" in dev:
            hi = lo = 0
        elif "missing_cursors" in dev:
            hi = lo = None
        elif "constant_cursors" in dev:
            hi = lo = 1_700_000_000 * scale
        elif "unordered_cursors" in dev and min_time is not None:
            hi, lo = 2 * min_time - lo, 2 * min_time - hi  # mirrored about minTime: newer than asked
        return Page(tuple(accounts), hi, lo, has_more, total, min_time, asked)


class Watch:
    """What the database shell does: keep state and `known`, loop on step, count requests."""

    def __init__(self, up: Upstream, count: int, page_cap: int = 10, check_purity: bool = False):
        self.up, self.count, self.page_cap = up, count, page_cap
        self.state = WatchState()
        self.known: set[str] = set()
        self.check_purity = check_purity

    def refresh(self) -> tuple[Outcome, int]:
        import copy

        pages: list[Page] = []
        verifies: list[Page] = []
        requests = 0
        while True:
            args = (self.state, frozenset(self.known), tuple(pages), tuple(verifies))
            kwargs = dict(page_cap=self.page_cap, page_size=self.count)
            if self.check_purity:
                before = copy.deepcopy(args)
            r = step(*args, **kwargs)
            if self.check_purity:
                assert args == before, "step mutated its inputs"
                assert step(*args, **kwargs) == r, "step is not deterministic"
            if isinstance(r, Outcome):
                break
            requests += 1
            assert requests <= self.page_cap + 2, "runaway refresh"
            if isinstance(r, NeedVerify):
                assert len(verifies) < 2, "asked to verify more than twice"
                verifies.append(self.up.page(r.min_time, self.count))
            else:
                assert isinstance(r, NeedPage)
                pages.append(self.up.page(r.min_time, r.count or self.count))
        self.state = r.state
        self.known |= r.seen_ids
        self.pages = tuple(pages)  # what the refresh read (free unfollow detection judges them)
        return r, requests


def ids(outcome: Outcome) -> list[str]:
    return [a["id"] for a in outcome.new_follows]


def apply(up: Upstream, op: str, arg: int, ever: list[str]) -> None:
    """One operation of a history (anything but "refresh"); `ever` lists every id followed."""
    if op in ("follow", "follow_same_second"):
        ever += [up.follow_new(same_second=op == "follow_same_second") for _ in range(arg)]
    elif op == "unfollow" and up.rows:
        up.unfollow(up.rows[arg % len(up.rows)][2])
    elif op == "refollow" and ever:
        up.follow(ever[arg % len(ever)])
    elif op == "unfollow_newest":
        for uid in up.newest(arg):
            up.unfollow(uid)
    elif op == "refollow_newest" and up.rows:
        up.follow(up.newest()[min(arg, len(up.rows) - 1)], same_second=True)


def replay(up: Upstream, w: Watch, history, *, exact: bool = True) -> dict:
    """Replay a history of operations against `up`, refreshing `w`, and compare every
    refresh with the oracle: exactly the accounts followed since the last refresh, still
    followed, and unknown to the watch (newest first). Returns counts; with `exact`
    asserts them (missed only where a truncation is reported)."""
    w.refresh()
    since = baseline = up.serial
    ever = list(up.key_of)
    counts = dict(false=0, missed=0, refreshes=0, requests=0, safe=0, truncated=0, announced=0)
    emitted: set[str] = set()
    for op, arg in list(history) + [("refresh", 0)]:
        if op == "refresh":
            expected = [uid for t, rank, uid in reversed(up.rows)
                        if abs(rank) > since and uid not in w.known]
            known_before = set(w.known)
            out, n = w.refresh()
            since = up.serial
            got = ids(out)
            # False: announced twice, or an account whose follow is older than the watch
            # (a late announcement of a real new follow counts as missed, not false).
            false = [x for x in got if x in emitted or x not in up.key_of or abs(up.key_of[x][1]) <= baseline]
            if exact:
                false += [x for x in got if x not in expected or x in known_before]
            missed = [x for x in expected if x not in got]
            counts["false"] += len(false)
            counts["missed"] += len(missed)
            counts["refreshes"] += 1
            counts["requests"] += n
            counts["announced"] += len(got)
            counts["safe"] += out.safe_mode is not None
            counts["truncated"] += out.truncated
            emitted |= set(got)
            if exact:
                assert len(got) == len(set(got)), got
                assert not false, (false, got, expected)
                if out.truncated:  # a subset, the newest kept
                    assert got == expected[: len(got)], (got, expected)
                else:
                    assert got == expected, (got, expected)
        else:
            apply(up, op, arg, ever)
    return counts
