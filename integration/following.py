"""The action: list the accounts a handle follows, paging for the user."""
from __future__ import annotations

import time
from collections.abc import Callable

from integration.errors import UpstreamFailure
from integration.ledger import BudgetReached
from integration.platforms import Platform
from integration.upstream import DumplingClient, Meter

UPSTREAM_MAX_COUNT = 100
# A failed later page ends the answer early (with the cursor to continue) instead of throwing
# away the pages already read and paid for; a refused key or empty balance still fails.
_RECOVERABLE = frozenset({"timeout", "unreachable", "rate_limited", "upstream_error", "malformed"})


def list_following(client: DumplingClient, api_key: str, handle: str, platform: Platform, *,
                   count: int | None = None, min_time: int | None = None, limit: int | None = None,
                   page_cap: int = 10, budget_seconds: float = 20.0,
                   clock: Callable[[], float] = time.monotonic, meter: Meter) -> dict:
    """One page when `limit` is absent; otherwise pages (following minCursor, never maxCursor)
    until `limit` accounts, `hasMore: false`, `page_cap` pages, or the wall-clock budget.

    The budget keeps the whole call inside Zapier's 30 s whatever the upstream latency: every
    page is bounded by what is left of it, and a next page starts only when the slowest page
    so far would still fit. Stopping early answers `hasMore: true` and `nextMinTime`."""
    deadline = clock() + budget_seconds
    accounts: list[dict] = []
    seen: set[str] = set()
    cursor, has_more, total, pages, slowest = min_time, True, None, 0, 0.0
    while True:
        ask = count
        if limit is not None:
            # Ask only for what is still wanted (a cursor is a follow time, not an offset, so a
            # smaller last page is safe), in as few pages (credits) as possible.
            ask = min(count or UPSTREAM_MAX_COUNT, limit - len(accounts))
        started = clock()
        try:
            page = client.fetch_page(api_key, handle, platform.request_source, count=ask, min_time=cursor,
                                     meter=meter, budget=deadline - started)
        except UpstreamFailure as failure:
            if pages == 0 or failure.kind not in _RECOVERABLE:
                raise
            break  # has_more stays True: the user continues from `cursor`
        except BudgetReached:
            if pages == 0:
                raise
            break  # the pages already paid for are answered; the rest after the budget resets
        slowest = max(slowest, clock() - started)
        pages += 1
        total = page.total if page.total is not None else total
        for account in page.accounts:
            if account["id"] not in seen:  # an inclusive cursor would repeat the boundary account
                seen.add(account["id"])
                accounts.append(account)
        progressed = bool(page.accounts) and page.min_cursor is not None and (cursor is None or page.min_cursor < cursor)
        has_more = page.has_more and progressed  # a cursor that does not move would loop forever
        if progressed:
            cursor = page.min_cursor
        if limit is None or not has_more or len(accounts) >= limit or pages >= page_cap:
            break
        if clock() + slowest > deadline:
            break
    # Never cut a page: per-account follow times are unknown, so `nextMinTime` can only resume
    # after a whole page. An upstream that ignores `count` may therefore overshoot `limit`.
    return {
        "handle": handle,
        "following": accounts,
        "count": len(accounts),
        "total": total,
        "hasMore": has_more,
        "nextMinTime": cursor if has_more else None,
        "pages": pages,
    }
