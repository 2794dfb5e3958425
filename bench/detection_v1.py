"""Version 1 of integration/detection.py (as released before exact same-second detection), kept
only so bench_deviations.py can measure it side by side with the current one.

Pure new-follow detection for one watch: no I/O, no clock, no mutation.

The upstream following list is newest follow first and paged by follow time:
a page's ``max_cursor`` / ``min_cursor`` are the follow times of its first /
last account, and the next older page is asked with ``min_time = min_cursor``.
We never see per-account follow times, only those page cursors.

A watch remembers the watermark ``W`` (the newest follow time seen so far) and
``top_ids``, ids of a contiguous newest-first prefix of the list as of the last
refresh. The caller also keeps ``known``: every id the watch has ever seen.
An account is a new follow iff its follow time is > W (it was followed after
the last refresh) and it is not known (each account is announced once).

Why it works (no per-account times needed):
* A page with ``min_cursor > W`` is entirely newer than W.
* A page with ``max_cursor <= W`` holds nothing newer than W, nor does any
  later page: stop. Unknown ids there are old accounts that moved up because
  newer ones were unfollowed.
* On the boundary page (``min_cursor <= W < max_cursor``) the accounts newer
  than W form a prefix. An unknown account standing before a ``top_ids``
  member ``t`` is newer than W: if ``t`` kept its old time, every account then
  newer than ``t`` was in the prefix and hence known, so the unknown one was
  followed since; if ``t`` was re-followed, it is newer than W itself.
  The page's last account is old (its time is min_cursor <= W). Unknown
  accounts between the page's last top_ids member and its last account are ambiguous
  (re-followed members can hide the boundary). Only then we spend ONE
  verification request, ``min_time = W + 1`` (same page size): it lists the
  accounts followed at or before W, starting exactly where the boundary page's
  newer prefix ends, so the first boundary account found on it ends the prefix.
* top_ids stays a valid prefix across refreshes: it is the fetched ids, then
  (unless the refresh was truncated, leaving an unseen gap) the old top_ids not
  reached, which are older than all fetched ones. Ids unfollowed since do no harm.

Loop used by the caller (``watches.py``)::

    pages, verify = [], None
    while not isinstance(r := step(state, known, pages, verify), Outcome):
        if isinstance(r, NeedVerify): verify = fetch(min_time=r.min_time)
        else: pages.append(fetch(min_time=r.min_time))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Set as AbstractSet
from dataclasses import dataclass

# Cap on stored top_ids: ten pages of 30. A longer prefix only makes the
# verification request rarer (more members to anchor on); the DB row stays small.
TOP_IDS_CAP = 300


@dataclass(frozen=True)
class Page:
    accounts: tuple[dict, ...]  # flat accounts, newest first; only account["id"] matters here
    max_cursor: int
    min_cursor: int
    has_more: bool


@dataclass(frozen=True)
class WatchState:
    watermark: int | None = None
    top_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class NeedPage:
    """Fetch the next page with this min_time (None = the first page)."""

    min_time: int | None


@dataclass(frozen=True)
class NeedVerify:
    """Fetch one page with this min_time (= W + 1), same count, and pass it as `verify`."""

    min_time: int


@dataclass(frozen=True)
class Outcome:
    new_follows: tuple[dict, ...]  # newest first, each account at most once
    state: WatchState
    seen_ids: frozenset[str]  # every id fetched in this refresh (the caller adds them to `known`)
    truncated: bool
    baseline: bool  # True when this refresh was the baseline


def step(
    state: WatchState,
    known: AbstractSet[str],
    pages: Sequence[Page],
    verify: Page | None = None,
    *,
    page_cap: int = 10,
) -> NeedPage | NeedVerify | Outcome:
    """Decide the next request, or the outcome once the fetched pages suffice.

    ``pages`` are the answers to the NeedPage requests so far, ``verify`` the answer
    to NeedVerify (else None). ``known`` need only answer for ids on those pages."""
    if not pages:
        return NeedPage(None)
    w = state.watermark
    if w is None:  # baseline: everything already followed is history, not news
        return _outcome(state, known, pages, verify, (), truncated=False, baseline=True)

    last = pages[-1]
    if last.accounts and last.min_cursor > w:  # the whole page is newer than W
        if not last.has_more:  # the list ends here: every old account was unfollowed
            return _outcome(state, known, pages, verify, _accounts(pages), truncated=False)
        if len(pages) < max(page_cap, 1):
            return NeedPage(last.min_cursor)
        # Burst larger than we may pay for: announce the newest, say so.
        return _outcome(state, known, pages, verify, _accounts(pages), truncated=True)

    newer = _accounts(pages[:-1])  # earlier pages were wholly newer than W
    if last.accounts and last.max_cursor > w:  # boundary page
        cut = _boundary_cut(last, state.top_ids, known, verify)
        if cut is None:
            return NeedVerify(w + 1)
        newer.extend(last.accounts[:cut])
    return _outcome(state, known, pages, verify, newer, truncated=False)


def _boundary_cut(
    page: Page, top_ids: Sequence[str], known: AbstractSet[str], verify: Page | None
) -> int | None:
    """Index such that unknown accounts before it are newer than W and those from it on
    are not; None when that needs the verification page we do not have yet."""
    ids = [a["id"] for a in page.accounts]
    top = set(top_ids)
    last_top = max((i for i, x in enumerate(ids) if x in top), default=-1)
    cut = max(last_top, 0)
    # The last account is always old here (min_cursor <= W), so it is never ambiguous.
    if all(x in known for x in ids[last_top + 1 : -1]):
        return cut
    if verify is None:
        return None
    older = {a["id"] for a in verify.accounts}
    first_old = next((i for i, x in enumerate(ids) if x in older), None)
    # No overlap can only come from the list changing between the two requests:
    # keep to what is proven rather than risk announcing old accounts.
    return cut if first_old is None else max(cut, first_old)


def _accounts(pages: Iterable[Page]) -> list[dict]:
    return [a for p in pages for a in p.accounts]


def _outcome(
    state: WatchState,
    known: AbstractSet[str],
    pages: Sequence[Page],
    verify: Page | None,
    newer: Iterable[dict],
    *,
    truncated: bool,
    baseline: bool = False,
) -> Outcome:
    fetched = [a for p in pages for a in p.accounts] + list(verify.accounts if verify else ())
    # Pages then the verification page form one contiguous newest-first prefix.
    order = list(dict.fromkeys(a["id"] for a in fetched))
    seen = frozenset(order)

    new_follows, announced = [], set()
    for a in newer:
        if a["id"] not in known and a["id"] not in announced:
            announced.add(a["id"])
            new_follows.append(dict(a))  # a copy: the caller may decorate events

    cursors = [p.max_cursor for p in pages if p.accounts]
    if state.watermark is None:
        # An empty baseline still ends the baseline: every later follow is newer than 0.
        watermark = max(cursors, default=0)
    else:
        watermark = max([state.watermark, *cursors])

    # Old top_ids not reached extend the prefix, unless truncation left a gap.
    if not (truncated or baseline):
        order += [t for t in state.top_ids if t not in seen]
    return Outcome(
        new_follows=tuple(new_follows),
        state=WatchState(watermark, tuple(order[:TOP_IDS_CAP])),
        seen_ids=seen,
        truncated=truncated,
        baseline=baseline,
    )
