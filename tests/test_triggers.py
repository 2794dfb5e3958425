"""The polling triggers end to end: detection through the database and the fake upstream,
with the credit cost of every scenario of issue #3, on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import itertools
import threading

import pytest
from sqlalchemy import select

from integration.items import BASELINE_SAMPLES
from tests.conftest import AUTH, make_test_app

P = 5  # page size for these tests
ROUTE = "/v1/{}/triggers/new-following"


@pytest.fixture
def trig(database_url, fake_upstream):
    app = make_test_app(database_url, fake_upstream.url, page_size=P, page_cap=4)
    client = app.test_client()

    def poll(handle="alice", platform="make", **body):
        before = fake_upstream.credits_spent()
        response = client.post(ROUTE.format(platform), json={"handle": handle, **body}, headers=AUTH)
        assert response.status_code == 200, response.get_data(as_text=True)
        cost = fake_upstream.credits_spent() - before
        assert response.headers["X-Credits-Used"] == str(cost)
        return response.get_json(), cost

    poll.client, poll.app = client, app
    yield poll
    app.extensions["tiktok_following"].engine.dispose()


def ids(items):
    return [item["id"] for item in items]


def uid(entry):
    return entry["user"]["id"]


def test_baseline_then_nothing_changed(trig, fake_upstream):
    fake_upstream.seed("alice", 12)
    assert trig() == ([], 1)          # the first refresh is a baseline: no events, 1 request
    assert trig() == ([], 1)          # nothing changed: 1 request


def test_fewer_than_a_page_of_new_follows(trig, fake_upstream):
    fake_upstream.seed("alice", 12)
    trig()
    new = [fake_upstream.follow("alice") for _ in range(P - 2)]
    items, cost = trig()
    assert cost == 1
    assert ids(items) == [uid(e) for e in reversed(new)]  # newest first
    assert [i["sequence"] for i in items] == [3, 2, 1]
    assert all(i["followedBy"] == "alice" for i in items)
    assert trig() == (items, 1)  # the journal keeps them; nothing new


def test_a_page_ending_on_the_watermark_second_costs_one_more_page(trig, fake_upstream):
    """P - 1 new follows: the page's last account is the newest old one, in second W, so
    the next page is read in case more follows of that second lie beyond it."""
    fake_upstream.seed("alice", 12)
    trig()
    new = [fake_upstream.follow("alice") for _ in range(P - 1)]
    items, cost = trig()
    assert cost == 2 and ids(items) == [uid(e) for e in reversed(new)]


@pytest.mark.parametrize("k", [P, P + 2, 2 * P, 3 * P - 1])
def test_burst_costs_at_most_ceil_k_over_p_plus_one(trig, fake_upstream, k):
    fake_upstream.seed("alice", 12)
    trig()
    new = [fake_upstream.follow("alice") for _ in range(k)]
    items, cost = trig(limit=300)
    assert ids(items) == [uid(e) for e in reversed(new)]
    assert cost <= -(-k // P) + 1  # later pages overlap by the boundary second and ask one more


def test_burst_past_the_page_cap_emits_the_newest_and_records_it(trig, fake_upstream):
    from integration.models import Watch

    fake_upstream.seed("alice", 12)
    trig()
    new = [fake_upstream.follow("alice") for _ in range(6 * P)]
    items, cost = trig(limit=300)
    assert cost == 4  # page_cap
    assert ids(items) == [uid(e) for e in reversed(new)][: 4 * P]
    svc = trig.app.extensions["tiktok_following"]
    with svc.sessions() as session:
        assert session.query(Watch).one().truncations == 1
    metrics = trig.client.get("/metrics").get_data(as_text=True)
    counted = [line for line in metrics.splitlines() if line.startswith("detection_truncated_total ")]
    assert counted and float(counted[0].split()[1]) >= 1
    assert trig() == (items, 1)  # and the next refresh is normal again


def test_unfollows_move_older_accounts_up_without_events(trig, fake_upstream):
    seeded = fake_upstream.seed("alice", 20)
    trig()
    for entry in seeded[:3]:  # including the newest
        fake_upstream.unfollow("alice", uid(entry))
    assert trig() == ([], 1)


def test_refollow_is_not_an_event_but_new_follows_in_the_same_refresh_are(trig, fake_upstream):
    seeded = fake_upstream.seed("alice", 20)
    trig()
    fake_upstream.unfollow("alice", uid(seeded[2]))
    new1 = fake_upstream.follow("alice")
    fake_upstream.follow("alice", account=seeded[2])  # followed again
    new2 = fake_upstream.follow("alice")
    items, cost = trig()
    assert ids(items) == [uid(new2), uid(new1)]
    assert cost <= 2


def test_mix_of_everything(trig, fake_upstream):
    seeded = fake_upstream.seed("alice", 30)
    trig()
    for entry in seeded[:4]:
        fake_upstream.unfollow("alice", uid(entry))
    fake_upstream.follow("alice", account=seeded[1])
    new = [fake_upstream.follow("alice") for _ in range(7)]
    fake_upstream.unfollow("alice", uid(new[3]))
    items, cost = trig(limit=300)
    assert ids(items) == [uid(e) for e in reversed(new) if e is not new[3]]
    assert cost <= 4


def test_an_account_is_emitted_at_most_once_per_watch(trig, fake_upstream):
    fake_upstream.seed("alice", 10)
    trig()
    new = fake_upstream.follow("alice")
    assert ids(trig()[0]) == [uid(new)]
    fake_upstream.unfollow("alice", uid(new))
    trig()
    fake_upstream.follow("alice", account=new)
    assert ids(trig()[0]) == [uid(new)]  # still the one journal entry
    assert trig()[0][0]["sequence"] == 1


def test_zapier_gets_journal_then_baseline_samples(trig, fake_upstream):
    seeded = fake_upstream.seed("alice", 12)
    first, cost = trig(platform="zapier")
    assert cost == 1
    # a few baseline samples on the very first call (items.BASELINE_SAMPLES of the first page)
    assert ids(first) == [uid(e) for e in seeded[:BASELINE_SAMPLES]]
    assert {i["sequence"] for i in first} == {0}
    new = fake_upstream.follow("alice")
    items, _ = trig(platform="zapier")
    assert ids(items)[0] == uid(new) and items[0]["sequence"] == 1
    assert ids(items)[1:] == ids(first)  # Zapier's dedupe already saw these ids: nothing old fires
    assert len(set(ids(items))) == len(items)


def test_make_gets_only_events_and_honours_since_and_after_sequence(trig, fake_upstream):
    fake_upstream.seed("alice", 12)
    assert trig(platform="make")[0] == []
    a = fake_upstream.follow("alice")
    first, _ = trig()
    cut = first[0]["detectedAt"]
    b, c = fake_upstream.follow("alice"), fake_upstream.follow("alice")
    items, _ = trig()
    assert ids(items) == [uid(c), uid(b), uid(a)]
    assert ids(trig(since=cut)[0]) == [uid(c), uid(b)]
    assert ids(trig(afterSequence=1)[0]) == [uid(c), uid(b)]
    assert ids(trig(limit=1)[0]) == [uid(c)]
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()
    assert trig(since=future)[0] == []


def test_event_shape(trig, fake_upstream):
    fake_upstream.seed("alice", 3)
    trig()
    entry = fake_upstream.follow("alice")
    item = trig()[0][0]
    assert set(item) == {"id", "uniqueId", "nickname", "profileUrl", "avatarThumb", "signature", "verified",
                         "privateAccount", "secUid", "followerCount", "followingCount", "heartCount", "videoCount",
                         "diggCount", "followedBy", "detectedAt", "sequence", "eventId", "event"}
    assert item["event"] == "new_following" and item["eventId"].isdigit()
    assert item["id"] == uid(entry) and item["profileUrl"].endswith("@" + entry["user"]["uniqueId"])
    assert dt.datetime.fromisoformat(item["detectedAt"].replace("Z", "+00:00")).tzinfo is not None


def test_watches_are_per_key_owner(trig, fake_upstream):
    fake_upstream.seed("alice", 5)
    fake_upstream.add_key("other-key")
    trig()
    new = fake_upstream.follow("alice")
    other = trig.client.post(ROUTE.format("make"), json={"handle": "alice"},
                             headers={"Authorization": "Bearer other-key"}).get_json()
    assert other == []  # a different owner has its own watch: this is its baseline
    assert ids(trig()[0]) == [uid(new)]


def test_upstream_failure_during_refresh_loses_nothing(trig, fake_upstream):
    fake_upstream.seed("alice", 10)
    trig()
    new = fake_upstream.follow("alice")
    fake_upstream.fail_next(500)
    response = trig.client.post(ROUTE.format("make"), json={"handle": "alice"}, headers=AUTH)
    assert response.status_code == 502
    assert ids(trig()[0]) == [uid(new)]


def test_refresh_window_coalesces_calls(database_url, fake_upstream):
    app = make_test_app(database_url, fake_upstream.url, refresh_window_seconds=60)
    client = app.test_client()
    fake_upstream.seed("alice", 10)
    for _ in range(5):
        assert client.post(ROUTE.format("zapier"), json={"handle": "alice"}, headers=AUTH).status_code == 200
    assert fake_upstream.credits_spent() == 1


def test_concurrent_callers_share_one_refresh_and_no_duplicates(database_url, fake_upstream):
    app = make_test_app(database_url, fake_upstream.url, refresh_window_seconds=60)
    fake_upstream.seed("alice", 10)
    app.test_client().post(ROUTE.format("make"), json={"handle": "alice"}, headers=AUTH)  # baseline
    with app.extensions["tiktok_following"].sessions.begin() as session:
        from sqlalchemy import update
        from integration.models import Watch
        session.execute(update(Watch).values(last_refresh_at=None))  # make it due
    new = [fake_upstream.follow("alice") for _ in range(3)]
    fake_upstream.delay = 0.3
    results, errors = [], []

    def call():
        try:
            r = app.test_client().post(ROUTE.format("make"), json={"handle": "alice"}, headers=AUTH)
            results.append((r.status_code, ids(r.get_json())))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert fake_upstream.credits_spent() == 2  # the baseline + exactly one shared refresh
    expected = [uid(e) for e in reversed(new)]
    assert all(status == 200 and got == expected for status, got in results), results


# ---------------------------------------------------------------- random histories, whole stack

from hypothesis import example, given, settings, strategies as st  # noqa: E402

OPS = st.lists(st.one_of(
    st.tuples(st.just("follow"), st.integers(1, 2 * P + 2)),
    # In the same second as the newest follow (the one the last poll saw, or a burst's).
    st.tuples(st.just("follow_same_second"), st.integers(1, 2 * P + 2)),
    st.tuples(st.just("unfollow"), st.integers(0, 12)),
    st.tuples(st.just("refollow"), st.integers(0, 12)),
    st.tuples(st.just("poll"), st.just(0)),
), min_size=1, max_size=12)


_handles = itertools.count()


@pytest.fixture
def trig_uncapped(database_url, fake_upstream):
    app = make_test_app(database_url, fake_upstream.url, page_size=P, page_cap=100)
    client = app.test_client()

    def poll(handle):
        response = client.post(ROUTE.format("make"), json={"handle": handle, "limit": 300}, headers=AUTH)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    poll.svc = app.extensions["tiktok_following"]
    yield poll
    poll.svc.engine.dispose()


@settings(max_examples=60)
@example(history=[("follow", 1), ("poll", 0), ("unfollow", 0), ("follow", 1), ("unfollow", 1)])
@example(history=[("follow", 1), ("poll", 0), ("follow_same_second", 1)])
@example(history=[("follow_same_second", 2 * P + 2), ("poll", 0), ("follow_same_second", 3)])
@given(history=OPS)
def test_random_histories_through_the_database_emit_exactly_the_new_follows(trig_uncapped, fake_upstream, history):
    """The pure detection is property-tested on its own; this drives the shell (state and
    known ids persisted in the database, pages from the fake over HTTP) the same way:
    each poll emits exactly the accounts followed since the last poll, still followed,
    and not known to the watch before it, newest first."""
    from integration import known
    from integration.models import Watch

    handle = f"rnd{next(_handles)}"
    fake_upstream.seed(handle, 15)
    trig_uncapped(handle)  # baseline
    emitted: set[str] = set()
    followed_since: set[str] = set()

    def poll():
        with trig_uncapped.svc.sessions() as session:
            known_before = known.all_of(session, session.scalar(select(Watch.id).where(Watch.handle == handle)))
        items = trig_uncapped(handle)
        fresh = [i["id"] for i in items if i["id"] not in emitted]
        current = [entry["user"]["id"] for _, entry in fake_upstream.following(handle)]
        assert fresh == [a for a in current if a in followed_since and a not in known_before]
        assert emitted.isdisjoint(fresh)
        emitted.update(fresh)
        followed_since.clear()

    for op, n in history:
        current = [entry for _, entry in fake_upstream.following(handle)]
        if op == "follow":
            followed_since.update(uid(fake_upstream.follow(handle)) for _ in range(n))
        elif op == "follow_same_second":
            second = (fake_upstream.following(handle) or [(0, None)])[0][0]
            followed_since.update(uid(fake_upstream.follow(handle, at=second or None)) for _ in range(n))
        elif op == "unfollow" and current:
            fake_upstream.unfollow(handle, uid(current[n % len(current)]))
        elif op == "refollow" and current:
            entry = current[n % len(current)]
            fake_upstream.unfollow(handle, uid(entry))
            fake_upstream.follow(handle, account=entry)
            followed_since.add(uid(entry))
        else:
            poll()
    poll()


# ---------------------------------------------------------------- upstream deviations, end to end

def test_a_private_following_list_is_a_clear_404_and_leaves_no_watch(trig, fake_upstream):
    from integration.models import Watch

    fake_upstream.seed("alice", 12)
    fake_upstream.set_deviations("hidden_list")
    response = trig.client.post(ROUTE.format("zapier"), json={"handle": "alice"}, headers=AUTH)
    assert response.status_code == 404
    body = response.get_json()
    assert body["code"] == "following_list_hidden" and "private" in body["error"]
    with trig.app.extensions["tiktok_following"].sessions() as session:
        assert session.query(Watch).count() == 0


def test_untrusted_cursors_still_announce_follows_before_a_seen_account(trig, fake_upstream):
    """Cursors always 0: no paging by time is possible, so the refresh runs in safe mode,
    announces what stands before an account seen before, and the watch records why."""
    from integration.models import Watch

    fake_upstream.seed("alice", 12)
    fake_upstream.set_deviations("zero_cursors")
    assert trig() == ([], 1)
    new = [fake_upstream.follow("alice") for _ in range(2)]
    items, cost = trig()
    assert ids(items) == [uid(e) for e in reversed(new)] and cost == 1
    with trig.app.extensions["tiktok_following"].sessions() as session:
        assert session.query(Watch).one().detection_mode == "cursors_invalid"


@pytest.mark.parametrize("deviation", ["inclusive_min_time", "millisecond_cursors", "numeric_ids",
                                       "missing_optional", "count_ignored_long"])
def test_tolerated_deviations_keep_bursts_exact(trig, fake_upstream, deviation):
    fake_upstream.seed("alice", 12)
    fake_upstream.set_deviations(deviation)
    trig()
    new = [fake_upstream.follow("alice") for _ in range(2 * P + 1)]
    new += [fake_upstream.follow("alice", at=fake_upstream.following("alice")[0][0]) for _ in range(2)]
    items, _ = trig(limit=300)
    assert ids(items) == [uid(e) for e in reversed(new)]


def test_the_stored_baseline_samples_are_a_few_whatever_the_page(trig, fake_upstream):
    from integration.items import unpack_samples
    from integration.models import Watch

    seeded = fake_upstream.seed("alice", 80)
    fake_upstream.set_deviations("count_ignored_long")  # 50 accounts whatever count is asked
    trig()
    with trig.app.extensions["tiktok_following"].sessions() as session:
        stored = session.query(Watch).one().samples
    assert [a["id"] for a in unpack_samples(stored)] == [uid(e) for e in seeded[:BASELINE_SAMPLES]]
