"""Pure unfollow detection (integration/unfollows.py) against the upstream model: random
follow/unfollow/re-follow histories, lists deeper than the readable cap, interrupted sweeps."""
from __future__ import annotations

from hypothesis import example, given, strategies as st

from integration.detection import Page
from integration.unfollows import Ask, Interrupted, Read, Record, next_ask, seen_in_refresh, seen_unfollowed, unfollowed
from tests.unfollow_model import replay_unfollows, sweep
from tests.upstream_model import Upstream, Watch, ids

OPS = st.one_of(
    st.tuples(st.sampled_from(["follow", "follow_same_second"]), st.integers(1, 12)),
    st.tuples(st.sampled_from(["unfollow", "refollow", "unfollow_newest", "refollow_newest"]), st.integers(0, 80)),
    st.tuples(st.just("sweep"), st.integers(0, 7)),
    st.tuples(st.just("refresh"), st.just(0)),
)


@example(n=60, history=[("sweep", 0), ("unfollow", 3), ("follow", 12), ("unfollow", 40), ("sweep", 0)],
         depth=45, count=8, ties="newest", refresh_count=10, deviation=None)
# Found by bench/bench_unfollows.py: every readable account followed since the last sweep (an
# empty anchor page) while earlier new follows were pushed past the depth cap.
@example(n=150, depth=100, count=10, ties="newest", refresh_count=10, deviation=None, history=[
    ("sweep", 0), ("follow", 10), ("refresh", 0), ("follow_same_second", 8), ("refresh", 0), ("sweep", 0),
    ("follow_same_second", 10), ("follow", 13), ("follow", 8), ("refollow", 490989), ("follow", 7), ("follow", 9),
    ("follow", 12), ("follow", 15), ("follow_same_second", 8), ("refresh", 0), ("follow", 7),
    ("follow_same_second", 6), ("follow", 8), ("follow", 10), ("sweep", 0)])
# Found by the bench: follows announced late (made before the last sweep, already deeper than
# the readable part) must not be judged by their absence.
@example(n=60, depth=25, count=100, ties="newest", refresh_count=10, deviation=None, history=[
    ("follow_same_second", 3), ("refresh", 0), ("sweep", 0), ("sweep", 1), ("refresh", 0), ("follow", 3),
    ("unfollow_newest", 3), ("refollow", 146962), ("follow_same_second", 2), ("sweep", 3), ("follow", 7),
    ("refollow", 367801), ("follow", 11), ("sweep", 1), ("follow_same_second", 4), ("refresh", 0),
    ("follow_same_second", 4), ("refollow", 81544), ("unfollow", 90064), ("sweep", 0), ("follow_same_second", 3),
    ("follow", 14), ("refollow", 901249), ("unfollow", 825207), ("unfollow", 177842), ("follow_same_second", 10),
    ("sweep", 1), ("sweep", 0), ("unfollow", 623741), ("unfollow", 659375), ("unfollow", 14690), ("refresh", 0),
    ("follow", 11), ("sweep", 0)])
# Refreshes that see unfollows for free, with same-second follows ordered oldest first: a
# re-followed account tied with the record's top, and pages read down to that second only.
@example(n=30, depth=25, count=8, ties="oldest", refresh_count=30, deviation=None, history=[
    ("sweep", 0), ("unfollow", 2), ("follow_same_second", 3), ("refollow_newest", 20), ("refresh", 0),
    ("unfollow_newest", 1), ("refresh", 0), ("follow", 4), ("unfollow", 7), ("refresh", 0), ("sweep", 0),
    ("refollow", 5), ("unfollow", 1), ("refresh", 0), ("sweep", 0)])
# Found by the bench: an upstream that swaps neighbours put a re-followed account last on a
# page, where it passed for one older than the record's top (see ORDER in unfollows.py).
@example(n=40, depth=None, count=10, ties="oldest", refresh_count=10, deviation="unordered", history=[
    ("unfollow", 71119), ("follow_same_second", 7), ("unfollow", 613184), ("refresh", 0), ("refresh", 0),
    ("refresh", 0), ("unfollow", 511705), ("follow", 7), ("follow", 15), ("follow", 11), ("sweep", 0),
    ("unfollow", 866903), ("refollow", 194686), ("unfollow", 829818), ("refollow", 949456),
    ("follow_same_second", 2), ("unfollow", 994171), ("follow_same_second", 7), ("refresh", 0),
    ("refollow", 145879), ("refollow", 408517), ("unfollow", 830022), ("sweep", 3), ("refresh", 0), ("sweep", 0),
    ("sweep", 1), ("follow_same_second", 3), ("follow", 4), ("unfollow_newest", 5), ("follow_same_second", 11),
    ("unfollow", 531545), ("sweep", 1), ("follow", 13), ("refollow", 16382), ("refresh", 0), ("refresh", 0),
    ("refollow", 226134), ("unfollow", 282044), ("unfollow", 530372), ("follow_same_second", 3)])
@given(n=st.integers(0, 70), history=st.lists(OPS, max_size=40), depth=st.sampled_from([None, 25, 45]),
       count=st.sampled_from([5, 8, 100]), ties=st.sampled_from(["newest", "oldest"]),
       refresh_count=st.sampled_from([10, 30]),
       deviation=st.sampled_from([None, None, "unordered", "inclusive_min_time", "duplicates"]))
def test_random_histories_never_announce_a_false_unfollow_or_follow(n, history, depth, count, ties,
                                                                     refresh_count, deviation):
    deviations = frozenset(d for d in ("depth_cap_100" if depth else None, deviation) if d)
    up = Upstream(n, deviations=deviations, depth_cap=depth or 100, ties=ties)
    counts = replay_unfollows(up, history, count=count, page_cap=30, refresh_count=refresh_count)
    assert counts["false"] == 0 and counts["false_follows"] == 0, counts


def test_an_unfollow_within_the_readable_part_is_announced_and_one_pushed_out_is_not():
    up = Upstream(40, deviations=frozenset({"depth_cap_100"}), depth_cap=30)
    pages, read = sweep(up, count=8, page_cap=30)
    record = Record(read.accounts, read.top)
    near, deep = up.newest()[5], up.newest()[29]  # position 29: the last readable one
    up.unfollow(near)
    up.unfollow(deep)
    up.follow_new()  # pushes everything one deeper: what stood at 29 would stand at 29 again, at best
    pages, read = sweep(up, count=8, page_cap=30, top=record.top)
    gone = [a["id"] for a in unfollowed(record, read)]
    assert near in gone
    assert deep not in gone  # it may have been pushed past the depth: undecided, not an unfollow


def test_an_account_pushed_out_of_the_readable_depth_is_never_an_unfollow():
    up = Upstream(30, deviations=frozenset({"depth_cap_100"}), depth_cap=30)
    _, read = sweep(up, count=10, page_cap=30)
    record = Record(read.accounts, read.top)
    for _ in range(12):
        up.follow_new()  # the 12 oldest are no longer readable, and nobody unfollowed anyone
    pages, read = sweep(up, count=10, page_cap=30, top=record.top)
    assert read.complete and len(read.accounts) == 30
    assert unfollowed(record, read) == []


def test_an_interrupted_sweep_decides_nothing_and_the_next_complete_one_does():
    up = Upstream(50)
    _, read = sweep(up, count=10, page_cap=30)
    record = Record(read.accounts, read.top)
    victim = up.newest()[20]
    up.unfollow(victim)
    pages, read = sweep(up, count=10, page_cap=30, top=record.top, fail_after=2)
    assert not read.complete and unfollowed(record, read) == []
    pages, read = sweep(up, count=10, page_cap=3, top=record.top)  # the page cap interrupts it too
    assert read == Read(False, pages=3, interrupted=Interrupted.PAGE_CAP)
    assert unfollowed(record, read) == []
    pages, read = sweep(up, count=10, page_cap=30, top=record.top)
    assert [a["id"] for a in unfollowed(record, read)] == [victim]


def test_the_first_sweep_only_records():
    up = Upstream(10)
    pages, read = sweep(up, count=100, page_cap=30)
    assert read.complete and len(pages) == 1
    assert unfollowed(None, read) == []


def test_a_follow_announced_late_and_already_pushed_out_is_not_an_unfollow():
    # Found by the bench: detection may announce a follow made before the last sweep after
    # it; if the account was already deeper than the readable part, its absence proves nothing.
    up = Upstream(10, deviations=frozenset({"depth_cap_100"}), depth_cap=10)
    late = up.follow_new()
    for _ in range(10):
        up.follow_new()  # `late` is now beyond the readable part
    _, read = sweep(up, count=100, page_cap=30)
    record = Record(read.accounts, read.top)
    assert late not in {a["id"] for a in read.accounts}
    up.follow_new()
    _, read = sweep(up, count=100, page_cap=30, top=record.top)
    assert unfollowed(record, read) == []


def test_unfollowed_then_followed_again_is_a_new_follow_once_forgotten():
    up = Upstream(20)
    w = Watch(up, 10)
    w.refresh()
    _, read = sweep(up, count=100, page_cap=30)
    record = Record(read.accounts, read.top)
    victim = up.newest()[7]
    up.unfollow(victim)
    pages, read = sweep(up, count=100, page_cap=30, top=record.top)
    assert [a["id"] for a in unfollowed(record, read)] == [victim]
    up.follow(victim)
    out, _ = w.refresh()
    assert ids(out) == []  # known: what happens without forgetting
    up.unfollow(victim)
    up.follow(victim)
    w.known.discard(victim)  # the shell forgets it when it records the unfollow
    out, _ = w.refresh()
    assert ids(out) == [victim]


def test_a_page_that_brings_nothing_new_or_lacks_cursors_interrupts():
    a = ({"id": "1"}, {"id": "2"})
    first = Page(a, 10, 9, True)
    assert next_ask((first,), page_cap=10) == Ask(10)
    assert next_ask((first, Page(a, 9, 9, True)), page_cap=10).interrupted is Interrupted.STUCK
    assert next_ask((first, Page((), 0, 0, True)), page_cap=10).interrupted is Interrupted.EMPTY_PAGE
    assert next_ask((Page(a, None, None, True),), page_cap=10).interrupted is Interrupted.CURSORS
    done = next_ask((first, Page(({"id": "2"}, {"id": "3"}), 9, 8, False)), page_cap=10)
    assert done == Read(True, ({"id": "1"}, {"id": "2"}, {"id": "3"}), 10, 2)


def test_the_anchor_page_bounds_the_follows_since_the_previous_sweep():
    first = Page(({"id": "n1"}, {"id": "n2"}, {"id": "o1"}, {"id": "o2"}), 20, 5, False)
    assert next_ask((first,), page_cap=10, top=12) == Ask(11)  # minTime = top - 1
    anchor = Page(({"id": "o1"}, {"id": "o2"}), 6, 5, False)
    read = next_ask((first, anchor), page_cap=10, top=12)
    assert read.complete and read.followed_since == 2
    assert next_ask((first, Page(({"id": "x"},), 6, 6, False)), page_cap=10, top=12).interrupted \
        is Interrupted.CURSORS  # an anchor account never read: the bound cannot be trusted


def test_cursors_that_change_unit_decide_nothing():
    record = Record(({"id": "1"}, {"id": "2"}, {"id": "3"}), 1_700_000_000_000)  # milliseconds then
    pages = (Page(({"id": "1"},), 1_700_000_000, 1_600_000_000, False),)
    read = next_ask(pages, page_cap=10)
    assert unfollowed(record, read) == []


# Unfollows seen for free in an ordinary refresh (seen_unfollowed).

def _swept(up: Upstream) -> Record:
    _, read = sweep(up, count=100, page_cap=30)
    return Record(read.accounts, read.top)


def _watched_and_swept(n: int) -> tuple[Upstream, Watch, Record]:
    up = Upstream(n)
    w = Watch(up, 30)
    w.refresh()
    return up, w, _swept(up)


def test_a_refresh_sees_an_unfollow_among_the_newest_without_a_sweep_and_without_a_request():
    up, w, record = _watched_and_swept(40)
    victim = up.newest()[6]
    up.unfollow(victim)
    before = up.requests
    out, requests = w.refresh()
    assert requests == 1 and up.requests == before + 1   # the refresh's own page, nothing more
    seen = seen_in_refresh(record, w.pages)
    assert [a["id"] for a in seen.gone] == [victim]
    # Out of the record moved on: neither the next refresh nor the next sweep reports it again.
    record = seen.record
    assert victim not in {a["id"] for a in record.accounts} and len(record.accounts) == 39
    w.refresh()
    assert seen_unfollowed(record, w.pages) == []
    _, read = sweep(up, count=100, page_cap=30, top=record.top)
    assert unfollowed(record, read) == []


def test_a_follow_made_after_the_sweep_enters_the_record_and_its_unfollow_is_seen():
    up, w, record = _watched_and_swept(40)
    newcomer = up.follow_new()
    out, _ = w.refresh()
    assert ids(out) == [newcomer]
    seen = seen_in_refresh(record, w.pages)
    assert seen.gone == () and seen.record.accounts[0]["id"] == newcomer
    assert seen.record.top == w.pages[0].max_cursor > record.top  # the newest time when the refresh read
    up.unfollow(newcomer)
    w.refresh()
    assert seen_unfollowed(seen.record, w.pages) == [{"id": newcomer, "uniqueId": f"name_{newcomer}"}]
    assert seen_unfollowed(record, w.pages) == []        # the sweep's record alone never held it


def test_an_account_followed_again_from_deep_in_the_record_is_counted_among_the_follows_since():
    # F = |R - record| would be 0 here (the re-followed account is in the record) and would
    # report r8, which only moved one place down.
    up = Upstream(10)
    record = _swept(up)
    r = up.newest()
    up.follow(r[9])                                      # on top again
    page = up.page(None, 9)                              # [r9, r0 .. r7]
    assert [a["id"] for a in page.accounts] == [r[9], *r[:8]]
    assert seen_unfollowed(record, [page]) == []
    up.unfollow(r[3])
    assert [a["id"] for a in seen_unfollowed(record, [up.page(None, 9)])] == [r[3]]


def test_pages_that_do_not_reach_below_the_records_top_decide_nothing():
    # Same-second follows ordered oldest first: a re-follow in the record's top second stands
    # below older accounts of that second, so only a page reaching an earlier second proves
    # where every follow since the record stands.
    up = Upstream(0, ties="oldest")
    c = up.follow_new()
    d = up.follow_new(same_second=True)
    a = up.follow_new()
    b = up.follow_new(same_second=True)
    assert up.newest() == [a, b, c, d]
    record = _swept(up)
    up.follow(d, same_second=True)                       # [a, b, d, c]: c is still followed
    page = up.page(None, 3)
    assert page.min_cursor == record.top
    assert seen_unfollowed(record, [page]) == []


def test_pages_that_do_not_continue_one_another_decide_nothing():
    up = Upstream(40)
    record = _swept(up)
    up.unfollow(up.newest()[2])
    first = up.page(None, 10)
    gap = up.page(first.min_cursor - 5, 10)              # skips accounts: not a prefix
    assert seen_unfollowed(record, [first, gap]) == []
    assert seen_unfollowed(record, [up.page(first.min_cursor, 10)]) == []  # not the top
    assert seen_unfollowed(None, [first]) == []
    assert len(seen_unfollowed(record, [first, up.page(first.min_cursor + 1, 10)])) == 1
