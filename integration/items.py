"""Trigger items and webhook bodies: how journal rows (and Zapier's baseline samples) are
rendered for the user. Read-only; the journal is written by `integration.watches`."""
from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy import select

from integration.filters import NO_FILTERS, Filters
from integration.models import Event, Watch
from integration.platforms import Platform
from integration.services import Services


def iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds") + "Z"


class EventKind(StrEnum):
    """An event's `event` (CONTRACT.md, "Beyond new follows"), and what a subscription delivers."""

    NEW_FOLLOWING = "new_following"
    UNFOLLOWED = "unfollowed"  # written by integration/sweeps.py
    FOLLOWED_BY_MANY = "followed_by_many"  # written by integration/crowds.py


# journal `event` values
NEW_FOLLOWING, UNFOLLOWED = EventKind.NEW_FOLLOWING.value, EventKind.UNFOLLOWED.value
FOLLOWED_BY_MANY = EventKind.FOLLOWED_BY_MANY.value


# Zapier's first poll shows a few accounts already followed (sequence 0) so the Zap editor
# has real samples. A few are enough: its dedupe is on eventId, and an account already
# followed never becomes an event, so no old account can fire whatever the samples. Two, not
# three: three realistic accounts compress to ~840 bytes and make a typical watch row 2.2 KB
# on SQLite (two rows per 4 KB page); two keep it ~1.5 KB (bench/bench_storage.py).
BASELINE_SAMPLES = 2


def pack_samples(first_page: Sequence[dict]) -> bytes:
    """The stored samples: the newest BASELINE_SAMPLES accounts of the baseline page, compressed."""
    return zlib.compress(json.dumps(list(first_page[:BASELINE_SAMPLES]), separators=(",", ":")).encode())


def unpack_samples(stored: bytes | None) -> list[dict]:
    return json.loads(zlib.decompress(stored)) if stored else []


def event_item(watch_handle: str, event: Event) -> dict:
    # eventId: the journal row's id, unique among all events (of every key), never reused on
    # PostgreSQL; numeric, so Make's (date, id) order breaks same-instant ties in detection order.
    payload = json.loads(event.payload)
    if event.event == FOLLOWED_BY_MANY:  # the payload carries followedByHandles
        named = {"followedByCount": len(payload["followedByHandles"])}
    else:
        named = {"unfollowedBy" if event.event == UNFOLLOWED else "followedBy": watch_handle}
    return {**payload, **named, "detectedAt": iso(event.detected_at), "sequence": event.sequence,
            "eventId": str(event.id), "event": event.event}


def trigger_items(svc: Services, watch_id: int, platform: Platform, *, limit: int,
                  since: dt.datetime | None = None, after_sequence: int | None = None,
                  filters: Filters = NO_FILTERS, kind: str = "new_following") -> list[dict]:
    """Newest first, only events of `kind` that pass `filters`. Zapier also gets the baseline
    accounts after the journal (sequence 0) of new follows."""
    with svc.sessions() as session:
        watch = session.get(Watch, watch_id)
        query = select(Event).where(Event.watch_id == watch_id, Event.event == kind)
        if since is not None:
            query = query.where(Event.detected_at > since.astimezone(dt.timezone.utc).replace(tzinfo=None))
        if after_sequence is not None:
            query = query.where(Event.sequence > after_sequence)
        query = query.order_by(Event.sequence.desc())
        if not filters.active:
            query = query.limit(limit)
        items: list[dict] = []
        # Filtered: walk the journal (bounded: JOURNAL_MAX_EVENTS per watch) until `limit` kept.
        for event in session.scalars(query.execution_options(yield_per=200)):
            item = event_item(watch.handle, event)
            if filters.keep(item):
                items.append(item)
                if len(items) >= limit:
                    break
        if platform.trigger_includes_baseline and kind == NEW_FOLLOWING and len(items) < limit \
                and since is None and after_sequence is None:
            listed = {item["id"] for item in items}
            for account in unpack_samples(watch.samples):
                if len(items) >= limit:
                    break
                if account["id"] not in listed and filters.keep(account):
                    # Not an event: a sample that seeds Zapier's dedupe; its id cannot be a journal row's.
                    items.append({**account, "followedBy": watch.handle, "detectedAt": iso(watch.created_at),
                                  "sequence": 0, "eventId": f"b{watch_id}-{account['id']}", "event": NEW_FOLLOWING})
        return items
