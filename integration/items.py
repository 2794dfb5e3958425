"""Trigger items and webhook bodies: how journal rows (and Zapier's baseline samples) are
rendered for the user. Read-only; the journal is written by `integration.watches`."""
from __future__ import annotations

import datetime as dt
import functools
import json
import zlib
from collections.abc import Sequence
from enum import StrEnum

import orjson
from sqlalchemy import bindparam, select

from integration.driver_sql import Prepared, Writes
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


def naive_utc(since: dt.datetime) -> dt.datetime:
    """The `since` of every trigger as journal times are stored: naive UTC (models.utcnow)."""
    return since.astimezone(dt.timezone.utc).replace(tzinfo=None)


def detected_after(since: dt.datetime):
    """The `since` filter of every trigger."""
    return Event.detected_at > naive_utc(since)


def event_item(watch_handle: str, event: Event) -> dict:
    # eventId: the journal row's id, unique among all events (of every key), never reused on
    # PostgreSQL; numeric, so Make's (date, id) order breaks same-instant ties in detection order.
    item = orjson.loads(event.payload)  # a fresh dict: completed in place, in the documented key order
    if event.event == FOLLOWED_BY_MANY:  # the payload carries followedByHandles
        item["followedByCount"] = len(item["followedByHandles"])
    else:
        item["unfollowedBy" if event.event == UNFOLLOWED else "followedBy"] = watch_handle
    item["detectedAt"] = iso(event.detected_at)
    item["sequence"] = event.sequence
    item["eventId"] = str(event.id)
    item["event"] = event.event
    return item


BATCH = 200  # journal rows read at a time when filters drop some
# What a trigger item needs of a journal row: plain rows (a Core select), no ORM objects.
_ITEM_COLUMNS = (Event.id, Event.sequence, Event.detected_at, Event.payload, Event.event)
_SAMPLES = Prepared(select(Watch.handle, Watch.samples, Watch.created_at).where(Watch.id == bindparam("w")))


@functools.cache
def _journal_query(since: bool, after: bool, before: bool):
    """A watch's journal of one kind, newest first, `n` rows: built once per shape (building
    and hashing a statement per call cost more than running it). The handle comes with each
    row (one statement); an empty journal needs it only for samples."""
    query = (select(Watch.handle, *_ITEM_COLUMNS).join(Watch, Watch.id == Event.watch_id)
             .where(Event.watch_id == bindparam("w"), Event.event == bindparam("kind")))
    if since:
        query = query.where(Event.detected_at > bindparam("since"))
    if after:
        query = query.where(Event.sequence > bindparam("after"))
    if before:  # the next batch (keyset)
        query = query.where(Event.sequence < bindparam("before"))
    return Prepared(query.order_by(Event.sequence.desc()).limit(bindparam("n")))


def trigger_items(svc: Services, watch_id: int, platform: Platform, *, session=None, riding: Writes | None = None,
                  **query) -> list[dict]:
    """Newest first, only events of `kind` that pass `filters`. Zapier also gets the baseline
    accounts after the journal (sequence 0) of new follows. Read in `session` when given (a
    transaction the trigger call made anyway: watches.open_watch's `answer`), its first read
    carrying that transaction's `riding` writes (driver_sql.Writes).

    The items are built once, in the documented shape (schemas.account.FollowEventSchema,
    checked by tests/test_trigger_items_shape.py): the route sends them as they are."""
    if session is not None:
        return _trigger_items(session, watch_id, platform, riding=riding, **query)
    with svc.reads() as session:
        return _trigger_items(session, watch_id, platform, **query)


def _trigger_items(session, watch_id: int, platform: Platform, *, limit: int, since: dt.datetime | None = None,
                   after_sequence: int | None = None, filters: Filters = NO_FILTERS,
                   kind: str = "new_following", riding: Writes | None = None) -> list[dict]:
    # Unfiltered, one LIMIT is the answer. Filtered, the journal (bounded: JOURNAL_MAX_EVENTS
    # per watch) is read in batches, newest first, until `limit` items are kept: keyset
    # pages, not a server-side cursor, so reads need no transaction (autocommit on PostgreSQL).
    filtered = filters.active
    batch = BATCH if filtered else limit
    params = {"w": watch_id, "kind": kind, "n": batch, "since": None if since is None else naive_utc(since),
              "after": after_sequence}
    items: list[dict] = []
    before = None
    while True:
        query = _journal_query(since is not None, after_sequence is not None, before is not None)
        rows = query.rows(session.connection(), {**params, "before": before}, riding)  # carried by the first only
        if not filtered:  # one read of `limit` rows: each is an item
            items = [event_item(event.handle, event) for event in rows]
            break
        for event in rows:
            item = event_item(event.handle, event)
            if filters.keep(item):
                items.append(item)
                if len(items) >= limit:
                    break
        if len(rows) < batch or len(items) >= limit:
            break
        before = rows[-1].sequence
    if platform.trigger_includes_baseline and kind == NEW_FOLLOWING and len(items) < limit \
            and since is None and after_sequence is None:
        handle, samples, created_at = _SAMPLES.one(session.connection(), {"w": watch_id})
        listed = {item["id"] for item in items}
        for account in unpack_samples(samples):
            if len(items) >= limit:
                break
            if account["id"] not in listed and filters.keep(account):
                # Not an event: a sample that seeds Zapier's dedupe; its id cannot be a journal row's.
                items.append({**account, "followedBy": handle, "detectedAt": iso(created_at),
                              "sequence": 0, "eventId": f"b{watch_id}-{account['id']}", "event": NEW_FOLLOWING})
    return items
