"""The known ids of a watch: every account it has ever seen, so an account is announced at
most once (until an unfollow forgets it). Every read and write of them is here.

Stored packed (integration/idset.py): the ids that fit in 64 bits in `known_segments`, one
row per range of at most SEGMENT_MAX ids (8 bytes each), so remembering a page rewrites the
segments its ids fall in, not the whole set; the others in `known_text_ids`.

Concurrency: `remember` and `forget` read a segment, change it and write it back. They run
only inside a transaction holding the watch row's lock (watches._commit and sweeps._commit
take it FOR UPDATE; on SQLite every write transaction holds the database's write lock), so
two writers never rewrite the same segment from the same old copy. `known_of` needs no lock:
one statement reads a consistent snapshot of the segments.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from integration import idset
from integration.db import connection_of
from integration.models import KnownSegment, KnownTextId

# Ids per segment: 1,920 bytes, so a segment row stays inside PostgreSQL's page (under its
# ~2 KB TOAST threshold: no out-of-line chunks to fetch on every lookup) and inside SQLite's
# page too. A refresh's page of 30-100 scattered ids falls in most segments of a large watch
# whatever their size, so larger ones would not make lookups read less.
SEGMENT_MAX = 240
_SHIFT = 2**63  # ids are unsigned, BIGINT is signed: `low` is stored shifted by this


# Core statements, built once: a refresh looks up every page it reads.
_SEG, _TEXT = KnownSegment.__table__, KnownTextId.__table__
_LOWS = select(_SEG.c.low).where(_SEG.c.watch_id == bindparam("w")).order_by(_SEG.c.low)
_THESE = select(_SEG.c.low, _SEG.c.ids).where(_SEG.c.watch_id == bindparam("w"),
                                              _SEG.c.low.in_(bindparam("lows", expanding=True)))
_ALL = select(_SEG.c.low, _SEG.c.ids).where(_SEG.c.watch_id == bindparam("w")).order_by(_SEG.c.low)
# A watch with at most this many segments (1,920 ids: most watches) is read whole by a lookup:
# one statement instead of two, and at most ~15 KB.
FEW_SEGMENTS = 8
_TEXT_AMONG = select(_TEXT.c.account_id).where(_TEXT.c.watch_id == bindparam("w"),
                                               _TEXT.c.account_id.in_(bindparam("ids", expanding=True)))


def _segments(session: Session | Connection, watch_id: int, numbers: list[int]) -> list[tuple[int, bytes]]:
    """(low, ids) of exactly the segments holding the sorted `numbers`, in order: the bounds
    first (from the primary key's index alone), then only those rows, so a page of scattered
    ids does not carry every segment of a large watch over the wire.

    Two reads without a lock are still one answer: segments are added (split) only by
    `remember`, which the refresh holding the watch's lease runs, the same one that looks up;
    a sweep's `forget` between them can only delete a segment it emptied, whose ids are then
    rightly not known."""
    conn = connection_of(session)
    lows = [low + _SHIFT for low in conn.execute(_LOWS, {"w": watch_id}).scalars()]
    if not lows:
        return []
    wanted = sorted({lows[idset.segment_of(lows, n)] - _SHIFT for n in numbers})
    return sorted((low + _SHIFT, blob) for low, blob in conn.execute(_THESE, {"w": watch_id, "lows": wanted}))


def _texts_among(session: Session | Connection, watch_id: int, others: set[str]) -> set[str]:
    return set(connection_of(session).execute(_TEXT_AMONG, {"w": watch_id, "ids": sorted(others)}).scalars())


def _by_segment(rows: list[tuple[int, bytes]], numbers: list[int]) -> dict[int, list[int]]:
    if len(rows) == 1:  # most watches: every number is the one segment's
        return {0: numbers}
    lows = [low for low, _ in rows]
    grouped: dict[int, list[int]] = defaultdict(list)
    for number in numbers:
        grouped[idset.segment_of(lows, number)].append(number)
    return grouped


def segment_count(watch_table):
    """How many segments the watch (a row of `watch_table`) has: a scalar subquery for the
    statement that takes a refresh's lease (watches.LEASE_STATE), so its lookups know
    whether to read the segments whole (`known_of`'s `segments`)."""
    return (select(func.count()).select_from(_SEG).where(_SEG.c.watch_id == watch_table.c.id)
            .correlate(watch_table).scalar_subquery())


def read_whole(segments: int | None) -> bool:
    """Whether a lookup reads the watch's segments whole: `segments`, how many it had when
    its refresh began (segment_count), are few (the count is only a choice of reads:
    segments added or emptied since change no answer)."""
    return segments is not None and segments <= FEW_SEGMENTS


def with_segments(query, watch_table):
    """`query`, a select of one row of `watch_table`, also returning that watch's segments:
    one row per segment, in order, as `segment_low` and `segment_ids` (a watch without any:
    one row, both None). A refresh's commit reads its locked watch row and the segments of
    a lookup that reads them whole (`read_whole`) in one statement."""
    return (query.add_columns(_SEG.c.low.label("segment_low"), _SEG.c.ids.label("segment_ids"))
            .outerjoin_from(watch_table, _SEG, _SEG.c.watch_id == watch_table.c.id).order_by(_SEG.c.low))


def segments_in(rows) -> list[tuple[int, bytes]]:
    """The segments (`known_of`'s `whole`) among rows of a `with_segments` statement."""
    return [(row.segment_low + _SHIFT, row.segment_ids) for row in rows if row.segment_low is not None]


def known_of(session: Session | Connection, watch_id: int, ids: Iterable[str], *, segments: int | None = None,
             whole: list[tuple[int, bytes]] | None = None) -> set[str]:
    """The ones among `ids` the watch has seen. `segments`: see `read_whole`; `whole`: all
    its segments, already read (`segments_in`)."""
    numbers, others = idset.partition(ids)
    found: set[str] = set()
    if numbers:
        if whole is not None:
            rows = whole
        elif read_whole(segments):
            rows = [(low + _SHIFT, blob) for low, blob in connection_of(session).execute(_ALL, {"w": watch_id})]
        else:
            rows = _segments(session, watch_id, numbers)
        if rows:
            for index, wanted in _by_segment(rows, numbers).items():
                found.update(map(str, idset.among(rows[index][1], wanted)))
    if others:
        found |= _texts_among(session, watch_id, others)
    return found


def remember(session: Session | Connection, watch_id: int, ids: Iterable[str]) -> None:
    """Adds `ids` to the watch's known ids (those already known are no change). Under the
    watch row's lock (see the module docstring)."""
    numbers, others = idset.partition(ids)
    if numbers:
        rows = _segments(session, watch_id, numbers)
        if not rows:  # nothing known yet
            _write(session, watch_id, 0, None, numbers)
        for index, added in (_by_segment(rows, numbers).items() if rows else ()):
            low, blob = rows[index]
            _write(session, watch_id, low, blob, idset.merged(blob, added))
    if others:
        already = _texts_among(session, watch_id, others)
        if others - already:
            connection_of(session).execute(insert(KnownTextId), [{"watch_id": watch_id, "account_id": i}
                                                                 for i in sorted(others - already)])


def forget(session: Session | Connection, watch_id: int, ids: Iterable[str]) -> None:
    """Removes `ids` (an unfollow: following again is a new follow). Under the watch row's lock."""
    numbers, others = idset.partition(ids)
    if numbers:
        rows = _segments(session, watch_id, numbers)
        for index, gone in (_by_segment(rows, numbers).items() if rows else ()):
            low, blob = rows[index]
            _write(session, watch_id, low, blob, idset.without(blob, gone))
    if others:
        connection_of(session).execute(delete(KnownTextId).where(KnownTextId.watch_id == watch_id,
                                                                 KnownTextId.account_id.in_(others))
                                       .execution_options(synchronize_session=False))


def _write(session: Session | Connection, watch_id: int, low: int, old: bytes | None, numbers: list[int]) -> None:
    """The segment starting at `low` now holds `numbers` (None `old`: it is new). One that
    grew past SEGMENT_MAX splits; an empty one goes, except the first (it bounds the rest)."""
    conn = connection_of(session)
    where = (KnownSegment.watch_id == watch_id) & (KnownSegment.low == low - _SHIFT)
    if not numbers and low != 0:
        conn.execute(delete(KnownSegment).where(where).execution_options(synchronize_session=False))
        return
    first, *rest = segment_rows(watch_id, numbers, low)
    if old is None:
        rest.insert(0, first)
    elif first["ids"] != old:
        conn.execute(update(KnownSegment).where(where).values(ids=first["ids"])
                     .execution_options(synchronize_session=False))
    if rest:
        conn.execute(insert(KnownSegment), rest)


def segment_rows(watch_id: int, numbers: list[int], low: int = 0) -> list[dict]:
    """PURE: `known_segments` rows holding the sorted `numbers`, the first bounded at `low`
    (also the migration's conversion)."""
    return [{"watch_id": watch_id, "low": (low if i == 0 else piece[0]) - _SHIFT, "ids": idset.pack(piece)}
            for i, piece in enumerate(idset.pieces(numbers, SEGMENT_MAX))]


def all_of(session: Session | Connection, watch_id: int) -> set[str]:
    """Every known id of the watch (for tests and checks; a refresh never needs them all)."""
    found = {str(n) for blob in session.scalars(select(KnownSegment.ids).where(KnownSegment.watch_id == watch_id))
             for n in idset.unpack(blob)}
    found.update(session.scalars(select(KnownTextId.account_id).where(KnownTextId.watch_id == watch_id)))
    return found
