"""Switchable deviations from the documented upstream (CONTRACT.md "The upstream we wrap").

Nobody has checked the documentation against the real service, so the fake can break
each assumption on purpose: tests, the probe (`python -m integration.probe`) and
`make demo` run against each. With no deviation switched on the fake answers exactly
as documented. One pure function, `page_body`, builds every 200 page.
"""
from __future__ import annotations

import bisect
from enum import Enum


class Deviation(str, Enum):
    INCLUSIVE_MIN_TIME = "inclusive_min_time"    # minTime returns accounts followed AT minTime too
    MILLISECOND_CURSORS = "millisecond_cursors"  # cursors and minTime in milliseconds
    ZERO_CURSORS = "zero_cursors"                # maxCursor/minCursor always 0
    MISSING_CURSORS = "missing_cursors"          # the cursor keys are absent
    CONSTANT_CURSORS = "constant_cursors"        # every page reports the first page's cursors
    UNORDERED_CURSORS = "unordered_cursors"      # later pages report cursors newer than minTime
    COUNT_IGNORED_LONG = "count_ignored_long"    # always 50 per page
    COUNT_IGNORED_SHORT = "count_ignored_short"  # at most 7 per page
    COUNT_MAX_20 = "count_max_20"                # count silently capped at 20
    HAS_MORE_ALWAYS = "has_more_always"          # hasMore always true
    HAS_MORE_WRONG = "has_more_wrong"            # hasMore always false
    EMPTY_PAGE_HAS_MORE = "empty_page_has_more"  # the first minTime page per handle: empty, hasMore true
    DUPLICATES = "duplicates"                    # an account repeated within and across pages
    NUMERIC_IDS = "numeric_ids"                  # user.id as a JSON number
    MISSING_OPTIONAL = "missing_optional"        # avatarThumb/signature missing or null, no stats
    DEPTH_CAP_100 = "depth_cap_100"              # the list ends after 100 accounts; total is the real one
    UNORDERED = "unordered"                      # adjacent pairs within a page swapped
    HIDDEN_LIST = "hidden_list"                  # 200, empty list, hasMore false, total > 0 (private)


NAMES = tuple(d.value for d in Deviation)
LONG_PAGE = 50
SHORT_PAGE = 7
COUNT_CAP = 20
DEPTH_CAP = 100


def parse(names) -> frozenset[Deviation]:
    """The deviations named; ValueError naming an unknown one."""
    out = set()
    for name in names:
        try:
            out.add(Deviation(name))
        except ValueError:
            raise ValueError(f"unknown deviation {name!r}; known: {', '.join(NAMES)}") from None
    return frozenset(out)


def _approximate(n: int) -> int:
    # Rounded to a multiple of 10 on purpose: the upstream's `total` is approximate.
    return (n + 5) // 10 * 10


def _page_size(asked: int, on: frozenset[Deviation]) -> int:
    if Deviation.COUNT_IGNORED_LONG in on:
        return LONG_PAGE
    if Deviation.COUNT_IGNORED_SHORT in on:
        return min(asked, SHORT_PAGE)
    if Deviation.COUNT_MAX_20 in on:
        return min(asked, COUNT_CAP)
    return asked


def _strip_optional(entry: dict, position: int) -> dict:
    user = dict(entry["user"])
    # Both ways a field can be "not there": absent, and present as null.
    absent, null = ("avatarThumb", "signature") if position % 2 == 0 else ("signature", "avatarThumb")
    del user[absent]
    user[null] = None
    return {"user": user}


def page_body(items: list[tuple[int, dict]], count: int, min_time, on: frozenset[Deviation],
              first_min_time_ask: bool = False) -> dict:
    """The 200 body for `items` (newest follow first, (unix seconds, entry)) asked with
    `count` (already defaulted and clamped) and `min_time` (None: from the newest).
    `first_min_time_ask`: this is the handle's first request carrying a minTime."""
    total = _approximate(len(items))
    if Deviation.HIDDEN_LIST in on:
        return {"followingList": [], "maxCursor": 0, "minCursor": 0, "hasMore": False, "total": max(total, 10)}
    if Deviation.DEPTH_CAP_100 in on:
        items = items[:DEPTH_CAP]
    scale = 1000 if Deviation.MILLISECOND_CURSORS in on else 1
    if min_time is not None and Deviation.EMPTY_PAGE_HAS_MORE in on and first_min_time_ask:
        return {"followingList": [], "maxCursor": 0, "minCursor": 0, "hasMore": True, "total": total}
    size = _page_size(count, on)
    start = 0
    if min_time is not None:
        seconds = min_time / scale if scale != 1 else min_time
        if Deviation.INCLUSIVE_MIN_TIME in on:  # first account followed at or before min_time
            start = bisect.bisect_left(items, -seconds, key=lambda it: -it[0])
        else:  # first account followed strictly before min_time
            start = bisect.bisect_right(items, -seconds, key=lambda it: -it[0])

    # DUPLICATES: the account the previous page ended with leads a minTime page, and the
    # page's own first account is shown twice; the page keeps its size.
    across = Deviation.DUPLICATES in on and min_time is not None and start > 0 and size > 1
    fresh = size - across
    within = Deviation.DUPLICATES in on and fresh > 1
    page = items[start:start + fresh - within]
    shown = list(page)
    if within and page:
        shown.insert(1, page[0])
    if across:
        shown.insert(0, items[start - 1])

    if Deviation.UNORDERED in on:
        for i in range(0, len(shown) - 1, 2):
            shown[i], shown[i + 1] = shown[i + 1], shown[i]
    times = [t for t, _ in shown]
    entries = [entry for _, entry in shown]
    if Deviation.NUMERIC_IDS in on:
        entries = [{**e, "user": {**e["user"], "id": int(e["user"]["id"])}} for e in entries]
    if Deviation.MISSING_OPTIONAL in on:
        entries = [_strip_optional(e, i) for i, e in enumerate(entries)]

    max_cursor = min_cursor = 0
    if times:  # the follow times of the first and last account (newest and oldest if unordered)
        unordered = Deviation.UNORDERED in on
        max_cursor, min_cursor = (max(times), min(times)) if unordered else (times[0], times[-1])
    if Deviation.CONSTANT_CURSORS in on and items:
        first = items[:size]
        max_cursor, min_cursor = first[0][0], first[-1][0]
    if Deviation.UNORDERED_CURSORS in on and min_time is not None and times:
        # Mirrored about minTime: newer than the page that led here.
        seconds = min_time / scale
        max_cursor, min_cursor = int(2 * seconds - min_cursor), int(2 * seconds - max_cursor)
    if times or Deviation.CONSTANT_CURSORS in on:
        max_cursor, min_cursor = max_cursor * scale, min_cursor * scale
    if Deviation.ZERO_CURSORS in on:
        max_cursor = min_cursor = 0

    has_more = start + len(page) < len(items)
    if Deviation.HAS_MORE_ALWAYS in on:
        has_more = True
    elif Deviation.HAS_MORE_WRONG in on:
        has_more = False
    body = {"followingList": entries, "maxCursor": max_cursor, "minCursor": min_cursor,
            "hasMore": has_more, "total": total}
    if Deviation.MISSING_CURSORS in on:
        del body["maxCursor"], body["minCursor"]
    return body
