"""The known ids of a watch in the database (integration/known.py) behave as a set, on SQLite
and PostgreSQL: random remember/forget histories against a Python set, with small segments
so that they split and empty."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings, strategies as st
from sqlalchemy import func, select

from integration import known
from integration.db import make_engine, make_session_factory, transaction
from integration.models import KnownSegment, Watch

TOP = 2**64 - 1
# A small id space so histories meet the same ids again; the edges; ids kept as text.
ids = st.one_of(st.integers(0, 40).map(str), st.sampled_from(["0", str(TOP), str(TOP - 1), str(2**63)]),
                st.sampled_from(["007", "abc", str(2**64), "x" * 32]))
ops = st.lists(st.tuples(st.sampled_from(["remember", "forget"]), st.lists(ids, max_size=12)), max_size=12)
_handles = itertools.count()


@pytest.fixture
def sessions(database_url, monkeypatch):
    monkeypatch.setattr(known, "SEGMENT_MAX", 4)
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def _new_watch(sessions) -> int:
    with transaction(sessions) as session:
        watch = Watch(owner_hash="o" * 64, handle=f"k{next(_handles)}")
        session.add(watch)
        session.flush()
        return watch.id


@settings(max_examples=60)
@example(history=[("remember", [str(i) for i in range(9)]), ("forget", [str(i) for i in range(4, 9)]),
                  ("remember", ["5", "0"]), ("forget", [str(i) for i in range(9)])])
@example(history=[("remember", ["0", str(TOP), "007"]), ("forget", ["0"]), ("remember", ["1"])])
@given(history=ops)
def test_known_ids_behave_as_a_set(sessions, history):
    watch_id = _new_watch(sessions)
    model: set[str] = set()
    every = {"0", str(TOP), str(TOP - 1), str(2**63), "007", "abc", str(2**64), "x" * 32, *map(str, range(41))}
    for op, batch in history:
        with transaction(sessions) as session:
            getattr(known, op)(session, watch_id, batch)
        model = model | set(batch) if op == "remember" else model - set(batch)
        with sessions() as session:
            assert known.known_of(session, watch_id, every) == model
            assert known.known_of(session, watch_id, batch) == model & set(batch)
            # Read whole (a refresh of a watch with few segments): the same answers.
            assert known.known_of(session, watch_id, every, segments=1) == model
            assert known.all_of(session, watch_id) == model
            lows = session.execute(select(KnownSegment.low, func.length(KnownSegment.ids))
                                   .where(KnownSegment.watch_id == watch_id).order_by(KnownSegment.low)).all()
        assert all(size <= 8 * known.SEGMENT_MAX for _, size in lows)
        assert not lows or lows[0][0] == -(2**63)  # the first segment is bounded at id 0


def test_a_page_is_found_among_many_segments(sessions, monkeypatch):
    monkeypatch.setattr(known, "SEGMENT_MAX", 240)
    watch_id = _new_watch(sessions)
    stored = [str(6_800_000_000_000_000_000 + 7919 * i) for i in range(5000)]
    with transaction(sessions) as session:
        known.remember(session, watch_id, stored[:2500])
    with transaction(sessions) as session:  # into existing segments, which split
        known.remember(session, watch_id, stored[2500:])
    page = stored[::170] + [str(6_800_000_000_000_000_001), "not-a-number"]
    with sessions() as session:
        assert known.known_of(session, watch_id, page) == set(stored[::170])
        assert known.known_of(session, watch_id, page, segments=0) == set(stored[::170])  # read whole
        segments = session.scalar(select(func.count()).select_from(KnownSegment).where(KnownSegment.watch_id == watch_id))
        assert segments >= 5000 // 240 + 1
        assert session.scalar(select(func.sum(func.length(KnownSegment.ids)))
                              .where(KnownSegment.watch_id == watch_id)) == 8 * 5000
