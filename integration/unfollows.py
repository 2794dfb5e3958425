"""Pure unfollow detection: which accounts a handle stopped following, decided from sweeps
and, at no extra request, from ordinary refreshes. No I/O, no clock; the shells are
`integration/sweeps.py` and `integration/watches.py`.

An unfollow is an absence, and an absence is only evidence where we looked. The upstream
serves a following list newest follow first, paged by follow time, and only to some depth
(peers report 5,000 to 10,000 accounts; the fake's `depth_cap_100`); `total` is rounded.
So a SWEEP reads the list from the top, page after page (``minTime = minCursor + 1``, the
overlap de-duplicated, as `following.Pager` does), until ``hasMore: false`` or the page cap.
What it read is a contiguous prefix of the list: its first ``n`` positions.

THE RULE. Let the previous complete sweep have read ``ids`` (positions 0..), with ``top``
the follow time of its first account, and the current complete sweep read ``R`` (n = |R|).
The accounts standing above a still-followed ``a`` now are those above it then that are
still followed, plus accounts followed since; the latter all have a follow time >= ``top``,
so they stand above every account older than ``top``, and their number ``F`` is at most
the position of the newest account followed before ``top - 1``, which ONE extra page asked
with ``minTime = top - 1`` (the anchor) shows first. Let ``q(a)`` = (accounts above ``a`` then that R holds) + F.
Every account absent from R with ``q(a) < n`` was unfollowed. Proof: take the topmost
counter-example ``b`` (still followed, absent, q(b) < n). An account above ``b`` then, still
followed and absent from R, would have q <= q(b) < n and be a higher counter-example; so all
the still-followed accounts above ``b`` then are in R, ``b``'s position is at most q(b) < n,
and the sweep read it: a contradiction. Everything else absent from R (pushed deeper than the
readable part, or never readable) is left undecided: a possible miss, never a false unfollow.

FOR FREE, IN A REFRESH. An ordinary refresh (`integration.detection`) reads the top of the
list anyway: pages asked with ``minTime = minCursor + 1`` whose first account was already
read, so ``R`` (its pages, de-duplicated) is a contiguous prefix of the list, n = |R|.
`seen_unfollowed` judges the previous record's accounts against it, at no extra request,
with the sweep's proof shape but a bound the refresh proves itself:

* A follow made since the record has time >= ``top``; in a tie with ``top`` the upstream may
  order it either way, so only an account whose time is PROVEN below ``top`` stands below
  every such follow. A page's last account has time ``minCursor``, and R is ordered by time:
  if a page has ``minCursor < top``, its last account and every account after it in R are
  older than every possible follow since the record. Let ``c`` be the deepest (in the
  record) record account among those; ``c`` was not followed again (its time is < top), so
  it kept its place relative to every record account that was not followed again.
* ABOVE c. A record account ``a`` that stood above ``c`` and is absent from R was
  unfollowed: still followed and not followed again, it still stands above ``c``; followed
  again, it is newer than ``c``; either way it stands above ``c``, inside the prefix R.
* BELOW c. Let ``G`` = (index of c in R) - (record accounts above c then that R holds): the
  accounts above c in R that are not record accounts above c. Every follow since the record
  stands above c, and those that are not re-follows of record accounts above c are among
  these G. Take ``q(a)`` = (record accounts above a then that R holds) + G. Every record
  account absent from R with ``q(a) < n`` was unfollowed. Proof: take the topmost
  counter-example ``b`` below c (still followed, absent, q(b) < n; none above c, by the
  previous point). It was not followed again (it would stand above c, in R). The accounts
  above it now are (1) record accounts above it then, not followed again, still followed:
  those R holds are counted in q(b), those it does not would be higher counter-examples
  (q <= q(b)); (2) follows since the record: re-follows of record accounts above c (in R,
  and above b then: counted in q(b)) and the others (at most G). Nothing else: an account
  never in the record that was not followed since stood below the record's end, hence
  below b. So b's position is at most q(b) < n, and R, a prefix of n, holds it: a
  contradiction.
* Why not simply F = |R \ record|: an account of the record followed again (it was below
  ``b``, it is now on top) is in the record, so that count misses it and would report ``b``
  (a false unfollow); G counts it, since it was not above c.
* THE RECORD MOVES ON. After a refresh that decided, the record becomes R, then the
  record's accounts below c that R does not hold and are not found unfollowed, and its
  ``top`` becomes the refresh's first maxCursor (so an account followed since the sweep and
  unfollowed later is judged too, G counts only what was followed since the last refresh,
  and pages keep reaching below ``top``). It is a record as both proofs need: a follow made
  after the refresh read has a time >= that maxCursor (the newest time then); its order is
  the follow-time order (R's, then accounts that stood below c, older than c, in their
  order); and every account followed at the refresh and older than the new ``top`` that
  stands above a record account b is in it above b: above c it is in R; below c, it was
  followed at the old record's time too (a follow made since then is newer than the old
  ``top``, so above c, so in R), so it was in the old record between c and b. Accounts left
  in it that are no longer followed are harmless: they are never counted as present.
* The record must be complete before the refresh's first page: the shell checks that no
  sweep completed or ran meanwhile, and a sweep whose record a refresh changed while it
  read decides nothing. Accounts found unfollowed leave the record, so no later sweep or
  refresh reports them again (followed again, such an account is a follow since the record,
  counted in F and in G).
When no page reaches below ``top`` (or no record account stands there), nothing is decided.

ORDER. Every rule here trusts positions, as detection does. An upstream that swaps
neighbours (the fake's `unordered`) makes a page's last account not its oldest, so ``c``
could be a newer account (found by the model: a re-followed account swapped last, taken for
an old one, "proving" everything above its old place unfollowed). So a refresh decides only
when the account above ``c`` in R is the one above it in the record: a swapped pair at ``c``
never passes. Random histories with `unordered` then give 0 false unfollows (the property
test in tests/test_unfollows.py, bench/bench_unfollows.py's `unordered` row; 149 in 1,500
histories without this check); disorder of a longer reach is not defended.

A sweep that does not end cleanly (upstream failure, killed worker, page cap, a second
holding more follows than a page, cursors it cannot trust) is INCOMPLETE: it decides
nothing and the record of the previous complete sweep stays for the next attempt.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from integration.detection import MAX_COUNT, MS_THRESHOLD, Page


class Interrupted(StrEnum):
    """Why a sweep decides nothing (the log and the metric label)."""

    PAGE_CAP = "page_cap"
    STUCK = "stuck"                    # a page brought nothing unseen: a second larger than a page, or minTime ignored
    CURSORS = "cursors"                # cursors missing, or an anchor page that does not continue the read
    EMPTY_PAGE = "empty_page"          # an empty page that says there is more


@dataclass(frozen=True)
class Ask:
    min_time: int | None
    count: int = MAX_COUNT


@dataclass(frozen=True)
class Read:
    """The end of a sweep: `accounts` (de-duplicated, newest first) when complete."""

    complete: bool
    accounts: tuple[dict, ...] = ()
    top: int | None = None             # the first page's maxCursor
    pages: int = 0
    interrupted: Interrupted | None = None
    # F: at most how many of `accounts` were followed since the previous sweep; None when it
    # cannot be bounded (no previous sweep, cursors that changed unit).
    followed_since: int | None = None


@dataclass(frozen=True)
class Record:
    """What is kept of the previous complete sweep: its accounts in order (the position of
    each is its index) and the follow time of its first account."""

    accounts: tuple[dict, ...]
    top: int | None


def next_ask(pages: Sequence[Page], *, page_cap: int, count: int = MAX_COUNT,
             top: int | None = None) -> Ask | Read:
    """The next page a sweep must read, or how it ended. `top`: the previous sweep's.

    Pages go down by ``minTime = minCursor + 1``, the overlap de-duplicated (as
    `following.Pager`). Once the read reaches below ``top - 1`` (or the list's end), ONE
    anchor page is asked with ``minTime = top - 1``: its first account is the newest one
    followed before ``top - 1`` (before ``top`` if the upstream's minTime is inclusive), so
    its index in the read bounds F from above. A sweep costs ceil(readable / count) credits,
    plus that one page."""
    if not pages:
        return Ask(None, count)
    if top is not None and pages[0].max_cursor is not None and \
            (top >= MS_THRESHOLD) != (pages[0].max_cursor >= MS_THRESHOLD):
        top = None  # the cursors changed unit: times cannot be compared this once
    seen: set[str] = set()
    accounts: list[dict] = []
    bound: int | None = None
    anchor_at: int | None = None       # the index the anchor page has (or will have) in `pages`
    deepest: Page | None = None        # the last page read by the ordinary descent
    for index, page in enumerate(pages):
        fresh = []
        for account in page.accounts:
            if account["id"] not in seen:
                seen.add(account["id"])
                fresh.append(account)
        if index == anchor_at:
            if page.accounts:
                first = page.accounts[0]["id"]
                at = next((i for i, a in enumerate(accounts) if a["id"] == first), None)
                if at is None:  # the anchor does not continue what was read: no bound to trust
                    return Read(False, pages=len(pages), interrupted=Interrupted.CURSORS)
                bound = at
            # else: nothing older than top - 1 could be read (every readable account may be new,
            # and a depth cap may hide how many): F has no bound, the sweep decides nothing.
            accounts.extend(fresh)
            if fresh:  # the anchor reached deeper than the descent: go on from it
                deepest = page
            continue
        if page.accounts and not fresh and page.has_more:
            return Read(False, pages=len(pages), interrupted=Interrupted.STUCK)
        accounts.extend(fresh)
        deepest = page
        if anchor_at is None and top is not None and (
                not page.has_more or (page.min_cursor is not None and page.min_cursor < top - 1)):
            anchor_at = index + 1
    if anchor_at == len(pages):
        return _capped(pages, page_cap) or Ask(top - 1, count)
    if not deepest.has_more:
        return Read(True, tuple(accounts), pages[0].max_cursor, len(pages), followed_since=bound)
    if not deepest.accounts:
        return Read(False, pages=len(pages), interrupted=Interrupted.EMPTY_PAGE)
    if deepest.min_cursor is None or deepest.min_cursor <= 0 or (
            deepest.max_cursor is not None and deepest.max_cursor < deepest.min_cursor):
        return Read(False, pages=len(pages), interrupted=Interrupted.CURSORS)
    return _capped(pages, page_cap) or Ask(deepest.min_cursor + 1, count)


def _capped(pages: Sequence[Page], page_cap: int) -> Read | None:
    if len(pages) >= page_cap:
        return Read(False, pages=len(pages), interrupted=Interrupted.PAGE_CAP)
    return None


def unfollowed(previous: Record | None, read: Read) -> list[dict]:
    """The accounts (as last seen) that were certainly unfollowed, in their old list order.

    `previous`: the last complete sweep (None: this is the first, which only records).
    `read`: the current sweep, asked with ``top=previous.top``. An incomplete sweep decides
    nothing.

    Only accounts of `previous` are judged. An account announced as a new follow since then
    is not: detection may announce late a follow made before `previous`, already deeper than
    it could read (found by bench/bench_unfollows.py), so nothing bounds where it stands. A
    follow and its unfollow between two sweeps is therefore left to the refreshes (which
    move the record on: `seen_in_refresh`)."""
    if previous is None or not read.complete or read.followed_since is None:
        return []
    bound = read.followed_since
    present = {a["id"] for a in read.accounts}
    n = len(read.accounts)
    gone: list[dict] = []
    above_present = 0  # accounts above the current one in `previous` that the sweep read
    for account in previous.accounts:
        if account["id"] in present:
            above_present += 1
        elif above_present + bound < n:
            gone.append(account)
    return gone


@dataclass(frozen=True)
class Seen:
    """What a refresh's pages decide: the accounts certainly unfollowed (old list order), and
    the record to keep (see THE RECORD MOVES ON above)."""

    gone: tuple[dict, ...]
    record: Record


def seen_in_refresh(previous: Record | None, pages: Sequence[Page]) -> Seen | None:
    """The accounts of `previous` (the record: the last complete sweep, moved on by the
    refreshes since) that an ordinary refresh's `pages` prove unfollowed, and the record
    moved on to these pages (see FOR FREE, IN A REFRESH above).

    None (nothing decided, the record stays) unless the pages continue one another by id
    (each first account already read), have usable cursors in the record's unit, and reach
    a record account proven older than the record's ``top``."""
    prefix = _prefix(pages)
    if previous is None or previous.top is None or prefix is None:
        return None
    top = previous.top
    read, ends, pages_top = prefix
    if any((cursor >= MS_THRESHOLD) != (top >= MS_THRESHOLD) for _, cursor in ends):
        return None                    # the cursors changed unit: times cannot be compared
    older = [at for at, cursor in ends if cursor < top]
    if not older:
        return None
    older_from = min(older)            # R[older_from:] is proven older than `top`
    index = {a["id"]: i for i, a in enumerate(read)}
    then = {a["id"]: i for i, a in enumerate(previous.accounts)}
    anchors = [then[a["id"]] for a in read[older_from:] if a["id"] in then]
    if not anchors:
        return None
    c_then = max(anchors)
    c_now = index[previous.accounts[c_then]["id"]]
    if c_then == 0 or c_now == 0 or read[c_now - 1]["id"] != previous.accounts[c_then - 1]["id"]:
        return None                    # c's neighbour above differs: see ORDER above
    above_c = [index[a["id"]] for a in previous.accounts[:c_then] if a["id"] in index]
    if any(at > c_now for at in above_c):
        return None                    # an order the proof does not hold for: decide nothing
    bound = c_now - len(above_c)       # G
    n = len(read)
    gone: list[dict] = []
    above_present = 0
    for position, account in enumerate(previous.accounts):
        if account["id"] in index:
            above_present += 1
        elif position < c_then or above_present + bound < n:
            gone.append(account)
    dropped = {a["id"] for a in gone}
    below = tuple(a for a in previous.accounts[c_then + 1:] if a["id"] not in index and a["id"] not in dropped)
    return Seen(tuple(gone), Record(tuple(read) + below, pages_top))


def seen_unfollowed(previous: Record | None, pages: Sequence[Page]) -> list[dict]:
    """`seen_in_refresh`'s unfollows only."""
    seen = seen_in_refresh(previous, pages)
    return list(seen.gone) if seen else []


def _prefix(pages: Sequence[Page]) -> tuple[list[dict], list[tuple[int, int]], int | None] | None:
    """R, the pages' accounts de-duplicated in list order; for each page the index in R of
    its last account with its minCursor (that account's follow time); and the first page's
    maxCursor. None unless each page continues the read (its first account already read)
    with usable cursors."""
    read: list[dict] = []
    seen: dict[str, int] = {}
    ends: list[tuple[int, int]] = []
    for page in pages:
        if not page.accounts:
            continue
        hi, lo = page.max_cursor, page.min_cursor
        if type(hi) is not int or type(lo) is not int or lo <= 0 or hi < lo:
            return None
        if read and page.accounts[0]["id"] not in seen:
            return None                # does not continue the prefix read so far
        if not read and page.asked_min_time is not None:
            return None                # not the top of the list
        for account in page.accounts:
            if account["id"] not in seen:
                seen[account["id"]] = len(read)
                read.append(account)
        ends.append((seen[page.accounts[-1]["id"]], lo))
    return read, ends, pages[0].max_cursor if read else None
