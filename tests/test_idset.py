"""The packed id codec (integration/idset.py): round trips, membership, insert and remove,
segments, and the ids that cannot be packed."""
from __future__ import annotations

from hypothesis import example, given, strategies as st

from integration import idset

TOP = 2**64 - 1
numbers = st.lists(st.integers(0, TOP), max_size=300)
edges = st.sampled_from([0, 1, TOP - 1, TOP, 2**63 - 1, 2**63])
mixed_numbers = st.lists(st.one_of(st.integers(0, TOP), edges), max_size=300)
# Ids that look numeric but would not read back the same, and plain text ids.
unpackable = st.one_of(
    st.sampled_from(["007", "00", "+5", "-1", " 5", "5 ", "1e3", "", "\u0661\u0662", "\uff11",
                     str(2**64), str(10**20), "9" * 21]),
    st.text(min_size=1, max_size=32).filter(lambda s: not idset.packable(s)),
)


def test_packable_is_exactly_the_canonical_decimals_below_2_64():
    assert all(idset.packable(s) for s in ("0", "1", str(TOP), "6123456789012345678"))
    assert not any(idset.packable(s) for s in ("007", "+5", "-1", "1.0", "\u0661", str(2**64), "abc", ""))


@example(values=[0, TOP])
@example(values=[])
@given(values=mixed_numbers)
def test_a_set_round_trips_at_8_bytes_per_id_and_answers_membership(values):
    ordered = sorted(set(values))
    blob = idset.pack(ordered)
    assert len(blob) == 8 * len(ordered)
    assert idset.unpack(blob) == ordered
    for n in [*ordered, 0, TOP, *(v + 1 for v in ordered if v < TOP)]:
        assert idset.contains(blob, n) == (n in set(ordered))


@given(stored=mixed_numbers, added=mixed_numbers)
def test_insert_and_remove_are_set_union_and_difference(stored, added):
    blob = idset.pack(sorted(set(stored)))
    assert idset.merged(blob, added) == sorted(set(stored) | set(added))
    assert idset.without(blob, added) == sorted(set(stored) - set(added))


@example(values=list(range(513)), most=512)
@given(values=numbers, most=st.integers(1, 64))
def test_pieces_keep_order_and_bound_and_even_sizes(values, most):
    ordered = sorted(set(values))
    cut = idset.pieces(ordered, most)
    assert [n for piece in cut for n in piece] == ordered
    assert all(len(piece) <= most for piece in cut)
    assert len(cut) == max(1, -(-len(ordered) // most))  # as few as possible
    assert max(map(len, cut)) - min(map(len, cut)) <= 1 or not ordered


@given(lows=st.lists(st.integers(1, TOP), max_size=20), n=st.integers(0, TOP))
def test_segment_of_is_the_last_low_bound_at_or_below(lows, n):
    bounds = [0, *sorted(set(lows))]
    i = idset.segment_of(bounds, n)
    assert bounds[i] <= n and (i == len(bounds) - 1 or bounds[i + 1] > n)


@given(ids=st.lists(st.one_of(st.integers(0, TOP).map(str), unpackable), max_size=60))
def test_partition_keeps_every_id_once_and_packs_only_what_reads_back_the_same(ids):
    packed, others = idset.partition(ids)
    assert {str(n) for n in packed} | others == set(ids)
    assert packed == sorted(set(packed))
    assert all(str(int(s)) != s or int(s) > TOP for s in others if s.isascii() and s.isdigit())


@example(ids=[])
@example(ids=["0", str(TOP), "6900000000000000001"])
@example(ids=["6900000000000000001", "007", "abc"])
@given(ids=st.lists(st.one_of(st.integers(0, TOP).map(str), unpackable), max_size=300, unique=True))
def test_an_ordered_list_round_trips_in_its_order(ids):
    blob = idset.pack_list(ids)
    assert idset.unpack_list(blob) == tuple(ids)
    if ids and all(idset.packable(i) for i in ids):
        assert len(blob) == 1 + 8 * len(ids)


def test_an_empty_list_is_stored_as_nothing():
    assert idset.pack_list([]) == b"" and idset.unpack_list(b"") == () and idset.unpack_list(None) == ()
