"""The action (list the accounts a handle follows, paging for the user) and the check
("does A follow B?"); both page with one `Pager`: the page cap and the wall-clock budget."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from integration.errors import UpstreamFailure
from integration.filters import NO_FILTERS, Filters
from integration.ledger import BudgetReached
from integration.platforms import Platform
from integration.upstream import DumplingClient, Meter

UPSTREAM_MAX_COUNT = 100
# A failed later page ends the answer early (with the cursor to continue) instead of throwing
# away the pages already read and paid for; a refused key or empty balance still fails.
_RECOVERABLE = frozenset({"timeout", "unreachable", "rate_limited", "upstream_error", "malformed"})


class Pager:
    """Pages back through a following list (following minCursor, never maxCursor) until the
    caller stops, `hasMore: false`, `page_cap` pages, or the wall-clock budget.

    The budget keeps the whole call inside Zapier's 30 s whatever the upstream latency: every
    page is bounded by what is left of it, and a next page starts only when the slowest page
    so far would still fit. After the loop, `has_more` and `cursor` say where to continue."""

    def __init__(self, client: DumplingClient, api_key: str, handle: str, platform: Platform, *,
                 min_time: int | None, page_cap: int, budget_seconds: float,
                 clock: Callable[[], float], meter: Meter):
        self.client, self.api_key, self.handle, self.platform = client, api_key, handle, platform
        self.page_cap, self.clock, self.meter = page_cap, clock, meter
        self.deadline = clock() + budget_seconds
        self.cursor, self.has_more, self.total, self.pages, self.slowest = min_time, True, None, 0, 0.0
        self.seen: set[str] = set()

    def read(self, ask: Callable[[], int | None]) -> Iterator[list[dict]]:
        """Yields each page's accounts not seen on an earlier page; `ask()` gives the `count`
        of the next request. The caller breaks when satisfied.

        Later pages start one second later than the cursor (`minTime = minCursor + 1`) and ask
        one more: follows sharing the boundary second beyond a page are read, not skipped, and
        the repeated boundary account is dropped. A page bringing nothing new (one second holds
        more follows than the page) is asked again once with the largest count, then passed."""
        ask_from, widen = self.cursor, False
        while True:
            count = ask()
            if self.pages:
                count = UPSTREAM_MAX_COUNT if widen else min((count or UPSTREAM_MAX_COUNT) + 1, UPSTREAM_MAX_COUNT)
            started = self.clock()
            try:
                page = self.client.fetch_page(self.api_key, self.handle, self.platform.request_source, count=count,
                                              min_time=ask_from, meter=self.meter, budget=self.deadline - started)
            except UpstreamFailure as failure:
                if self.pages == 0 or failure.kind not in _RECOVERABLE:
                    raise
                return  # has_more stays True: the user continues from `cursor`
            except BudgetReached:
                if self.pages == 0:
                    raise
                return  # the pages already paid for are answered; the rest after the budget resets
            self.slowest = max(self.slowest, self.clock() - started)
            self.pages += 1
            self.total = page.total if page.total is not None else self.total
            fresh = [a for a in page.accounts if a["id"] not in self.seen]  # the overlap, or an inclusive minTime
            self.seen.update(a["id"] for a in fresh)
            movable = bool(page.accounts) and page.has_more and page.min_cursor is not None
            if fresh and page.min_cursor is not None:
                self.cursor = page.min_cursor
                ask_from, widen, self.has_more = self.cursor + 1, False, page.has_more
            elif movable and not widen:
                widen, self.has_more = True, True
            elif movable and ask_from != page.min_cursor:
                ask_from, widen, self.has_more = page.min_cursor, False, True  # go past that second
            else:
                self.has_more = False  # a page bringing nothing new would loop forever
            yield fresh
            if not self.has_more or self.pages >= self.page_cap or self.clock() + self.slowest > self.deadline:
                return


def list_following(client: DumplingClient, api_key: str, handle: str, platform: Platform, *,
                   count: int | None = None, min_time: int | None = None, limit: int | None = None,
                   page_cap: int = 10, budget_seconds: float = 20.0, filters: Filters = NO_FILTERS,
                   clock: Callable[[], float] = time.monotonic, meter: Meter) -> dict:
    """One page when `limit` is absent; otherwise pages until `limit` accounts (that pass the
    filters), the end of the list, the page cap or the budget. Stopping early answers
    `hasMore: true` and `nextMinTime`. Filters apply per page: a page whose accounts were all
    filtered out still cost its credit, and `count` counts the accounts kept."""
    pager = Pager(client, api_key, handle, platform, min_time=min_time, page_cap=page_cap,
                  budget_seconds=budget_seconds, clock=clock, meter=meter)
    accounts: list[dict] = []

    def ask() -> int | None:
        if limit is None:
            return count
        if filters.active:  # some accounts will not pass: the most accounts per credit
            return count or UPSTREAM_MAX_COUNT
        # Ask only for what is still wanted (a cursor is a follow time, not an offset, so a
        # smaller last page is safe), in as few pages (credits) as possible.
        return min(count or UPSTREAM_MAX_COUNT, limit - len(accounts))

    for fresh in pager.read(ask):
        accounts.extend(a for a in fresh if filters.keep(a))
        if limit is None or len(accounts) >= limit:
            break
    # Never cut a page: per-account follow times are unknown, so `nextMinTime` can only resume
    # after a whole page. An upstream that ignores `count` may therefore overshoot `limit`.
    return {
        "handle": handle,
        "following": accounts,
        "count": len(accounts),
        "total": pager.total,
        "hasMore": pager.has_more,
        "nextMinTime": pager.cursor if pager.has_more else None,
        "pages": pager.pages,
    }


def check_follows(client: DumplingClient, api_key: str, handle: str, target: str, platform: Platform, *,
                  page_cap: int = 10, budget_seconds: float = 20.0,
                  clock: Callable[[], float] = time.monotonic, meter: Meter) -> dict:
    """Does `handle` follow `target` (a normalized username, or a numeric user id)? Reads the
    largest pages the upstream honours and stops at the page where the target is.

    "No" is `complete` only when the whole list was read: the end was reached and about
    `total` accounts were seen (an upstream that stops serving a list at some depth says
    `hasMore: false` early: `read_to_the_end`). A page cap, the budget or a failed later page
    make it incomplete."""
    pager = Pager(client, api_key, handle, platform, min_time=None, page_cap=page_cap,
                  budget_seconds=budget_seconds, clock=clock, meter=meter)
    for fresh in pager.read(lambda: UPSTREAM_MAX_COUNT):
        for account in fresh:
            if target in (account["id"], account["uniqueId"].lower()):
                return {"follows": True, "account": account, "complete": True, "pagesRead": pager.pages}
    complete = not pager.has_more and read_to_the_end(len(pager.seen), pager.total)
    return {"follows": False, "account": None, "complete": complete, "pagesRead": pager.pages}


def read_to_the_end(read: int, total: int | None) -> bool:
    """After `hasMore: false`: was the whole list read, or did the upstream stop serving it at
    some depth? `total` is approximate (the upstream rounds it), so only a shortfall beyond
    max(10, 5% of total) counts as a depth limit; a larger error in `total` makes a "no"
    incomplete, never a wrong "complete"."""
    if total is None:
        return True
    return read >= total - max(10, total // 20)
