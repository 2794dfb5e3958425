"""Watchlists: one trigger call over up to 50 handles, each its own watch.

Each handle is opened (refreshed and coalesced) exactly as a single handle is, on a small
bounded thread pool so 50 handles fit in Zapier's 30 s; a handle not done when the wall
clock (ACTION_BUDGET_SECONDS) runs out answers from its journal. Items are merged newest
first across handles (detectedAt, then eventId)."""
from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable

from sqlalchemy import select

from integration import errors
from integration.models import Watch
from integration.services import Services

THREADS = 8  # upstream calls in flight for one poll: enough for 50 handles in 30 s at ~1 s a page

OpenOne = Callable[[str], tuple[int, bool]]  # handle -> (watch id, paid for a refresh?)


def open_all(svc: Services, owner: str, handles: list[str], open_one: OpenOne, *,
             budget_seconds: float) -> tuple[dict[str, int], bool]:
    """({handle: watch id} for every handle that has a watch, any refresh paid?).

    One handle runs in the caller's thread (as before watchlists). An error of any handle
    (a refused key, an unknown handle) is the answer, as it would be for that handle alone."""
    if len(handles) == 1:
        watch_id, paid = open_one(handles[0])
        return {handles[0]: watch_id}, paid
    pool = ThreadPoolExecutor(max_workers=min(THREADS, len(handles)), thread_name_prefix="watchlist")
    try:
        # Each task in a copy of this context: logs keep the request id.
        futures = {handle: pool.submit(contextvars.copy_context().run, open_one, handle) for handle in handles}
        wait(futures.values(), timeout=max(0.0, budget_seconds))
    finally:
        # Handles still queued are not started; refreshes in flight finish (and are journaled)
        # in the background, for the next poll.
        pool.shutdown(wait=False, cancel_futures=True)
    opened: dict[str, int] = {}
    paid = False
    late = []
    for handle, future in futures.items():
        if not future.done() or future.cancelled():
            late.append(handle)
            continue
        try:
            watch_id, refreshed = future.result()  # raises that handle's error
        except errors.UpstreamFailure as failure:
            raise _naming(handle, failure) from failure
        opened[handle] = watch_id
        paid = paid or refreshed
    opened.update(_existing(svc, owner, late))
    return opened, paid


HANDLE_FAILURES = {errors.FailureKind.NOT_FOUND.value, errors.FailureKind.LIST_HIDDEN.value}


def _naming(handle: str, failure: errors.UpstreamFailure) -> Exception:
    """In a watchlist, an error about one handle (unknown, list hidden) says which one."""
    if failure.kind not in HANDLE_FAILURES:
        return failure
    error = errors.from_upstream(failure)
    message = f"'{handle}' (in handles): {error.message}"
    return errors.ApiError(error.status, error.code, message, error.headers, {"handles": [message]})


def _existing(svc: Services, owner: str, handles: list[str]) -> dict[str, int]:
    """The watches of handles not refreshed in time (a handle never watched has none yet)."""
    if not handles:
        return {}
    with svc.sessions() as session:
        rows = session.execute(select(Watch.handle, Watch.id)
                               .where(Watch.owner_hash == owner, Watch.handle.in_(handles))).all()
    return {handle: watch_id for handle, watch_id in rows}


def merge(lists: list[list[dict]], limit: int) -> list[dict]:
    """Newest first across handles: detectedAt, then eventId (journal ids are numbers;
    Zapier's baseline samples, `b...`, sort after every real event of the same instant)."""
    def key(item: dict):
        event_id = item["eventId"]
        return item["detectedAt"], event_id.isdigit(), int(event_id) if event_id.isdigit() else 0, event_id
    return sorted((item for items in lists for item in items), key=key, reverse=True)[:limit]

