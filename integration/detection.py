"""Pure new-follow detection for one watch: no I/O, no clock, no mutation.

The upstream following list is newest follow first and paged by follow time: a
page's ``max_cursor`` / ``min_cursor`` are the follow times of its first / last
account, and an older page is asked with ``min_time``. We never see per-account
follow times, only those page cursors, and several follows may share one second.

State (``WatchState``): the watermark ``W`` (newest follow time seen), ``top_ids``
(ids of a contiguous newest-first prefix of the list as of the last refresh) and
``exclusive`` (the last refresh may not have read every follow made in second W).
The caller also keeps ``known``: every id the watch has ever seen. The threshold is
``θ = W`` (``W + 1`` when exclusive).

An account is a NEW FOLLOW iff it is not known and it was followed after the last
refresh. Why the rules below decide that exactly:

* Floor. A refresh reads a contiguous prefix of the list from the top, down to an
  account older than W (or the list's end). So every account then followed at a
  time >= W was seen, hence is known; a follow made later has time >= W (the same
  second included). An unknown account with time >= θ is therefore new, and one
  with time < θ is old (an old account never seen that moved up because newer ones
  were unfollowed).
* Pages. A page with ``min_cursor >= θ`` lies wholly at or after θ: its unknown
  accounts are new, and the next page must be read. A page with ``max_cursor < θ``
  holds nothing new, nor does any later one: stop.
* Anchors. An unknown account standing before the first ``top_ids`` member ``t``
  still in its seen order is new: ``t`` kept its time, so everything then standing
  before it was in the prefix and is known. (New follows stand there: they are newer
  than every account seen before. Only the first such member is used: an upstream
  that swaps neighbours could put an old account before a later one.)
* The boundary page (``min_cursor < θ <= max_cursor``): its last account has time
  min_cursor (old). Any other unknown account on it after the first anchor is
  ambiguous: only then we spend ONE verification request, ``min_time = θ``; it
  lists the accounts older than θ, starting where the boundary page's new prefix
  ends.
* Same second across a page boundary. The next page is asked with
  ``min_time = min_cursor + 1``, not ``min_cursor``: with a strict ``minTime`` the
  latter would skip the rest of a group of follows sharing the boundary second.
  The overlap is de-duplicated by id. A page that brings nothing unseen (a group of
  one second larger than the page) is asked again once with ``count = MAX_COUNT``.

Upstream deviations, and what each does (no crash, no unbounded paging, never an
old account announced as new; exactness where the data allows it):

* ``minTime`` inclusive: the overlap is larger and de-duplicated; a verification
  page whose ``max_cursor >= θ`` proves it, and is asked again with ``θ - 1``.
* Cursors in milliseconds: nothing here depends on the unit, as long as it stays
  the same; a change of unit (by magnitude) re-anchors the watermark in safe mode.
* Cursors missing, zero, negative, ``max < min``, newer than the ``minTime`` asked,
  or an overlap ask that does not overlap (cursors equal on every page): the
  cursors are not trusted for this refresh -> SAFE MODE (below).
* ``count`` ignored (longer or shorter pages), ``hasMore`` always true or wrong, an
  empty page: paging stops on the cursors, on a page that brings nothing unseen, on
  an empty page, and always at ``page_cap`` requests (plus at most two
  verification requests).
* Duplicates within or across pages: the first occurrence counts.
* A list that stops early (a depth cap) while ``total`` says more: the end is not
  trusted (``exclusive`` stays conservative).
* Order not by follow time: known accounts standing out of the order they were
  seen in (more than re-follows explain, and some among the older ones) -> SAFE
  MODE. Fewer swaps go undetected, and a swapped old account can still be announced
  (bench/bench_detection.py's matrix counts it).

SAFE MODE reads the first page only and announces the unknown accounts that stand
before its first anchor: the rule that needs no cursor. Anything else is left unannounced (a possible miss, never a false
follow); the outcome names the reason for the caller's metric and watch status.

Loop used by the caller (``watches.py``); each fetched page carries what was asked::

    pages, verifies = [], []
    while not isinstance(r := step(state, known, pages, verifies), Outcome):
        page = fetch(min_time=r.min_time, count=getattr(r, "count", None))
        (verifies if isinstance(r, NeedVerify) else pages).append(page)
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence, Set as AbstractSet
from dataclasses import dataclass
from enum import StrEnum

# Cap on stored top_ids. Anchors are looked for among them, so the cap is how many of the
# newest accounts may be unfollowed between two refreshes before the boundary page has no
# anchor: then one verification request decides (exact, one credit more) and a safe-mode
# refresh announces nothing. 64 keeps the watch row under 2 KB (8 bytes an id; issue 14);
# bench/bench_detection.py's scenarios and matrix read the same at 64 as at 300.
TOP_IDS_CAP = 64
# The `count` asked when a page of one second cannot be paged past (the largest the
# upstream is known to honour; a smaller honoured maximum only makes that rarer).
MAX_COUNT = 100
# Cursors above this are milliseconds (10**11 s is the year 5138).
MS_THRESHOLD = 10**11
# More known accounts out of their seen order than this is not re-follows.
MAX_MOVED_ANCHORS = 3


class SafeMode(StrEnum):
    """Why a refresh could not use the cursors (the metric label and the watch status)."""

    CURSORS_INVALID = "cursors_invalid"
    CURSORS_NOT_MONOTONIC = "cursors_not_monotonic"
    CURSORS_INCONSISTENT = "cursors_inconsistent"
    CURSOR_UNIT_CHANGED = "cursor_unit_changed"
    ORDER_BROKEN = "order_broken"


@dataclass(frozen=True)
class Page:
    accounts: tuple[dict, ...]  # flat accounts, newest first; only account["id"] matters here
    max_cursor: int | None
    min_cursor: int | None
    has_more: bool
    total: int | None = None
    asked_min_time: int | None = None  # what this page was asked with
    asked_count: int | None = None


@dataclass(frozen=True)
class WatchState:
    watermark: int | None = None
    top_ids: tuple[str, ...] = ()
    exclusive: bool = False  # the follows of second `watermark` may not all have been read
    # Set when the last refresh ran in safe mode: its cursors proved nothing, so the next
    # refresh re-anchors (announces by anchors only, and takes its watermark afresh).
    safe_mode: SafeMode | None = None


@dataclass(frozen=True)
class NeedPage:
    """Fetch the next page with this min_time (None = the first page) and count (None = the page size)."""

    min_time: int | None
    count: int | None = None


@dataclass(frozen=True)
class NeedVerify:
    """Fetch one page with this min_time, the page size, and pass it in `verifies`."""

    min_time: int


@dataclass(frozen=True)
class Outcome:
    new_follows: tuple[dict, ...]  # newest first, each account at most once
    state: WatchState
    seen_ids: frozenset[str]  # every id fetched in this refresh (the caller adds them to `known`)
    truncated: bool  # more new follows may exist than were read (page cap, or a giant second)
    baseline: bool  # True when this refresh was the baseline
    safe_mode: SafeMode | None = None


def step(
    state: WatchState,
    known: AbstractSet[str],
    pages: Sequence[Page],
    verifies: Sequence[Page] = (),
    *,
    page_cap: int = 10,
    page_size: int | None = None,
) -> NeedPage | NeedVerify | Outcome:
    """Decide the next request, or the outcome once the fetched pages suffice.

    ``pages`` answer the NeedPage requests so far, ``verifies`` the NeedVerify ones.
    ``known`` need only answer for ids on those pages."""
    if not pages:
        return NeedPage(None)
    trouble = _cursor_trouble(state, pages)
    if trouble is not None:
        return _safe_outcome(state, known, pages[0], trouble)

    baseline = state.watermark is None
    reanchor = not baseline and state.safe_mode is not None
    theta = None if baseline or reanchor else state.watermark + (1 if state.exclusive else 0)
    ask, stuck = _next_ask(state, pages, theta, page_size)
    if ask is not None and len(pages) < max(page_cap, 1):
        return ask
    truncated = ask is not None or stuck
    order = _first_occurrences(pages)
    if baseline:
        return _outcome(state, pages, verifies, order, [], truncated=truncated, baseline=True)

    top = {t: i for i, t in enumerate(state.top_ids)}
    anchors = [i for i, (a, _) in enumerate(order) if a["id"] in top]
    kept = [anchors[k] for k in _kept_anchors([top[order[i][0]["id"]] for i in anchors])]
    first_anchor = kept[0] if kept else -1
    if reanchor:  # as in safe mode: before the first anchor
        newer = [a for a, _ in order[:anchors[0] if anchors else 0] if a["id"] not in known]
        return _outcome(state, pages, verifies, order, newer, truncated=truncated)
    if len(anchors) - len(kept) > MAX_MOVED_ANCHORS:
        # More known accounts out of order than re-follows usually explain: re-followed
        # ones are newer than θ, so none may stand among the older accounts.
        if not verifies:
            return NeedVerify(theta)
        older = {a["id"] for a in verifies[-1].accounts}
        moved = {order[i][0]["id"] for i in anchors} - {order[i][0]["id"] for i in kept}
        if moved & older:
            return _safe_outcome(state, known, pages[0], SafeMode.ORDER_BROKEN)

    new, ambiguous = [], []
    for i, (account, p) in enumerate(order):
        uid = account["id"]
        if uid in known:
            continue
        page = pages[p]
        # After a refresh that could not read second W whole (exclusive), what it read all
        # lies in second W, where positions prove nothing (a re-follow in that second may
        # stand after accounts of it never seen): the cursors and the verification decide.
        positional = i < first_anchor and not state.exclusive
        if positional or page.min_cursor >= theta:
            new.append(i)
        elif page.max_cursor >= theta and page.accounts[-1]["id"] != uid:
            ambiguous.append(i)
        # else: older than θ (a page wholly older, or the boundary page's last account)

    if ambiguous:
        decided = _verified(order, ambiguous, first_anchor, verifies, theta)
        if isinstance(decided, NeedVerify):
            return decided
        new = sorted(new + decided)
    if state.exclusive:
        # The last refresh could not read all of second W: an unknown account of that
        # second may be a follow made in it after the refresh. Not announced (it may be
        # old), but reported as a possible miss.
        chosen = set(new)
        last = pages[-1]
        truncated = truncated or bool(last.accounts and last.has_more and last.min_cursor >= state.watermark) or any(
            i not in chosen and order[i][0]["id"] not in known and pages[p].max_cursor >= state.watermark
            for i, (_, p) in enumerate(order))
    return _outcome(state, pages, verifies, order, [order[i][0] for i in new], truncated=truncated)


def _cursor_trouble(state: WatchState, pages: Sequence[Page]) -> SafeMode | None:
    """The first reason the pages' cursors cannot be trusted, else None."""
    seen: set[str] = set()
    for i, page in enumerate(pages):
        if not page.accounts:
            continue
        hi, lo = page.max_cursor, page.min_cursor
        if type(hi) is not int or type(lo) is not int or lo <= 0 or hi < lo or (hi != lo and len(page.accounts) == 1):
            return SafeMode.CURSORS_INVALID
        if state.watermark and state.safe_mode is None and (state.watermark >= MS_THRESHOLD) != (hi >= MS_THRESHOLD):
            return SafeMode.CURSOR_UNIT_CHANGED
        asked = page.asked_min_time
        if asked is not None:
            # Strict minTime: every account is older than `asked`; inclusive: at most as old.
            if hi > asked:
                return SafeMode.CURSORS_NOT_MONOTONIC
            prev = pages[i - 1] if i else None
            # An overlap ask restarts the boundary second's group: its first account was seen.
            if prev is not None and prev.accounts and asked == prev.min_cursor + 1 \
                    and hi >= prev.min_cursor and page.accounts[0]["id"] not in seen:
                return SafeMode.CURSORS_INCONSISTENT
        seen.update(a["id"] for a in page.accounts)
    return None


def _next_ask(state: WatchState, pages: Sequence[Page], theta: int | None,
              page_size: int | None) -> tuple[NeedPage | None, bool]:
    """The next page to read (None when the read is done), and whether the read is stuck
    on a page it cannot get past (more may exist than was read).

    The read goes on while the last page lies wholly at or after θ (it may hold more
    new follows), and until it reaches an account older than the newest second seen,
    so that the next refresh knows every follow of that second (``exclusive``)."""
    last = pages[-1]
    if not last.accounts or not last.has_more:
        return None, False
    asked = last.asked_count or page_size or 0
    earlier = {a["id"] for p in pages[:-1] for a in p.accounts}
    if len(pages) > 1 and all(a["id"] in earlier for a in last.accounts):
        # Nothing unseen: a second holding more follows than the page, or an end the
        # upstream does not admit. Ask once more with the largest count, else give up
        # (reported as truncated: more may exist than could be read).
        if asked < MAX_COUNT:
            return NeedPage(last.asked_min_time, MAX_COUNT), False
        return None, True
    newest = max([state.watermark or 0, *(p.max_cursor for p in pages if p.accounts)])
    if not ((theta is not None and last.min_cursor >= theta) or last.min_cursor >= newest):
        return None, False
    if last.max_cursor == last.min_cursor:
        # One second fills the page: asking one second later would restart that second's
        # group where this page started it, so ask for it whole, with the largest count.
        return (NeedPage(last.min_cursor + 1, MAX_COUNT), False) if asked < MAX_COUNT else (None, True)
    # One more than the page size: the boundary account comes again, so a page still brings
    # a page's worth of accounts not seen yet.
    size = page_size or last.asked_count
    return NeedPage(last.min_cursor + 1, min(size + 1, MAX_COUNT) if size else None), False


def _first_occurrences(pages: Sequence[Page]) -> list[tuple[dict, int]]:
    """(account, page index) for each id at its first occurrence, list order."""
    seen, out = set(), []
    for p, page in enumerate(pages):
        for account in page.accounts:
            if account["id"] not in seen:
                seen.add(account["id"])
                out.append((account, p))
    return out


def _kept_anchors(indices: list[int]) -> list[int]:
    """Positions (into `indices`) of the known accounts still in the order they were seen
    in: a longest increasing run of their old places. The others were re-followed (or
    the upstream's order is broken, when there are more than re-follows explain)."""
    tails: list[int] = []  # tails[k]: position ending the best run of length k + 1
    ends: list[int] = []   # ends[k] = indices[tails[k]] (increasing), searched without rebuilding it
    back: list[int | None] = []
    for pos, value in enumerate(indices):
        k = bisect_left(ends, value)
        back.append(tails[k - 1] if k else None)
        if k == len(tails):
            tails.append(pos)
            ends.append(value)
        else:
            tails[k] = pos
            ends[k] = value
    run, pos = [], tails[-1] if tails else None
    while pos is not None:
        run.append(pos)
        pos = back[pos]
    return run[::-1]


def _verified(order, ambiguous: list[int], first_anchor: int, verifies: Sequence[Page],
              theta: int) -> list[int] | NeedVerify:
    """The ambiguous positions that are new, or the verification request still needed."""
    if not verifies:
        return NeedVerify(theta)
    older_page = verifies[-1]
    if len(verifies) == 1 and older_page.accounts and type(older_page.max_cursor) is int \
            and older_page.max_cursor >= theta:
        return NeedVerify(theta - 1)  # an inclusive minTime: ask for "strictly older" again
    older = {a["id"] for a in older_page.accounts}
    cut = next((i for i in range(first_anchor + 1, len(order)) if order[i][0]["id"] in older), None)
    # No overlap can only come from the list changing between the requests: keep to
    # what is proven rather than risk announcing old accounts.
    if cut is None:
        return []
    return [i for i in ambiguous if i < cut and order[i][0]["id"] not in older]


def _outcome(state: WatchState, pages: Sequence[Page], verifies: Sequence[Page], order, newer,
             *, truncated: bool, baseline: bool = False) -> Outcome:
    prefix = [a["id"] for a, _ in order]
    seen = set(prefix) | {a["id"] for v in verifies for a in v.accounts}
    read = [p for p in pages if p.accounts]
    # After a safe-mode refresh the old watermark proves nothing: take it afresh.
    watermark = max([0 if state.safe_mode else state.watermark or 0, *(p.max_cursor for p in read)])
    # The verification page continues the prefix where it overlaps the boundary page.
    verify = verifies[-1] if verifies else None
    if verify is not None and any(a["id"] in set(prefix) for a in verify.accounts):
        prefix += [a["id"] for a in verify.accounts if a["id"] not in set(prefix)]
        read.append(verify)
    floor = min((p.min_cursor for p in read if type(p.min_cursor) is int), default=None)
    last = pages[-1]
    # The end of the list is trusted only when `total` does not say there is more.
    ended = not last.has_more and (last.total is None or last.total <= len(prefix))
    # Every account newer than `floor` was read (the read is contiguous from the top).
    exclusive = not (ended or (floor is not None and floor < watermark))
    if not (truncated or baseline):  # old top_ids not reached extend the prefix
        prefix += [t for t in state.top_ids if t not in seen]
    return Outcome(
        new_follows=tuple(dict(a) for a in newer),  # copies: the caller may decorate events
        state=WatchState(watermark, tuple(dict.fromkeys(prefix))[:TOP_IDS_CAP], exclusive),
        seen_ids=frozenset(seen),
        truncated=truncated,
        baseline=baseline,
    )


def _safe_outcome(state: WatchState, known: AbstractSet[str], page: Page, reason: SafeMode) -> Outcome:
    """The first page only, the anchor rule only (see the module docstring)."""
    order = _first_occurrences([page])
    ids = [a["id"] for a, _ in order]
    top = set(state.top_ids)
    anchors = [i for i, x in enumerate(ids) if x in top]
    # Before the first anchor: new follows are newer than every account seen before, so
    # they stand there; nothing else can be proven without cursors.
    cut = anchors[0] if anchors else 0
    baseline = state.watermark is None
    new = () if baseline else tuple(dict(a) for a, _ in order[:cut] if a["id"] not in known)
    hi = page.max_cursor
    valid = type(hi) is int and hi > 0
    if reason is SafeMode.CURSOR_UNIT_CHANGED or (baseline and valid):
        watermark = hi  # re-anchor in the unit the upstream now speaks
    else:
        watermark = state.watermark if state.watermark is not None else 0
    # Old top_ids continue the page only past an anchor (new follows may lie beyond a
    # page without one), and only while the order can be trusted.
    contiguous = anchors and reason is not SafeMode.ORDER_BROKEN
    prefix = ids + ([t for t in state.top_ids if t not in set(ids)] if contiguous else [])
    return Outcome(
        new_follows=new,
        state=WatchState(watermark, tuple(prefix[:TOP_IDS_CAP]), True, reason),
        seen_ids=frozenset(ids),
        truncated=False,
        baseline=baseline,
        safe_mode=reason,
    )
