"""Unfollow detection in the service (integration/sweeps.py): the polling trigger, sweeps due
per `sweepEvery`, the journal and outbox, re-follows, interruptions, the depth cap. On SQLite
and PostgreSQL, against the fake upstream over HTTP."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from integration import ledger, sweeps, watches
from integration.detection import Page
from integration.models import Delivery, Event, UnfollowSweep, Watch
from integration.platforms import Platform
from integration.upstream import Meter
from integration.worker import Worker
from tests.conftest import API_KEY, AUTH, clocked_app, make_test_app, unique_handle

START = dt.datetime(2026, 11, 26, 12, 0)


@pytest.fixture
def env(database_url, fake_upstream):
    with clocked_app(database_url, fake_upstream.url, START, page_size=30, page_cap=4) as (client, svc, now):
        yield client, svc, fake_upstream, now


def unfollows(client, handle, **body):
    response = client.post("/v1/zapier/triggers/unfollowed", json={"handle": handle, **body}, headers=AUTH)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def spent(fake, before=[0]):
    now, delta = fake.credits_spent(API_KEY), None
    delta, before[0] = now - before[0], now
    return delta


def test_a_poll_sweeps_when_due_and_announces_unfollows_within_the_readable_list(env):
    client, svc, fake, now = env
    handle = unique_handle()
    fake.seed(handle, 248)
    ids = [str(a["user"]["id"]) for a in fake.seed(handle, 248)]
    spent(fake)
    assert unfollows(client, handle) == []          # the first sweep only records the list
    assert spent(fake) == 1 + 3                    # the watch's baseline, then ceil(248 / 100) pages
    fake.unfollow(handle, ids[10])
    fake.unfollow(handle, ids[240])
    now[0] += dt.timedelta(hours=23)
    # No sweep due; the new-follow refresh reads the first page anyway, which proves ids[10] gone.
    assert [i["id"] for i in unfollows(client, handle)] == [ids[10]]
    assert spent(fake) == 1                        # the new-follow refresh only
    now[0] += dt.timedelta(hours=1)
    items = unfollows(client, handle)
    assert spent(fake) == 1 + 4                    # 246 accounts: 3 pages, plus the anchor page
    # The sweep reports ids[240] only (ids[10] left its record), newest event first.
    assert [i["id"] for i in items] == [ids[240], ids[10]]
    assert {i["event"] for i in items} == {"unfollowed"} and {i["unfollowedBy"] for i in items} == {handle}
    assert items[0]["uniqueId"] and len({i["eventId"] for i in items}) == 2
    # Not new follows, and not announced again by the next sweep.
    new = client.post("/v1/zapier/triggers/new-following", json={"handle": handle}, headers=AUTH).get_json()
    assert not [i for i in new if i["event"] != "new_following"]
    now[0] += dt.timedelta(hours=24)
    assert [i["eventId"] for i in unfollows(client, handle)] == [i["eventId"] for i in items]
    # afterSequence / since (Make) see only what is newer.
    assert unfollows(client, handle, afterSequence=items[0]["sequence"]) == []


def test_accounts_pushed_past_the_readable_depth_are_not_unfollows(env):
    client, svc, fake, now = env
    fake.set_deviations("depth_cap_100")           # the list is served to 100 accounts only
    handle = unique_handle()
    ids = [str(a["user"]["id"]) for a in fake.seed(handle, 150)]
    assert unfollows(client, handle, sweepEvery=1) == []
    for _ in range(6):
        fake.follow(handle)                        # ids[94..99] now stand beyond the depth
    fake.unfollow(handle, ids[3])
    now[0] += dt.timedelta(hours=1)
    assert [i["id"] for i in unfollows(client, handle, sweepEvery=1)] == [ids[3]]


def test_an_account_unfollowed_then_followed_again_is_a_new_follow(env):
    client, svc, fake, now = env
    handle = unique_handle()
    entries = fake.seed(handle, 40)
    assert unfollows(client, handle) == []
    victim = entries[5]
    fake.unfollow(handle, victim["user"]["id"])
    now[0] += dt.timedelta(hours=24)
    assert [i["id"] for i in unfollows(client, handle)] == [str(victim["user"]["id"])]
    fake.follow(handle, victim)
    now[0] += dt.timedelta(minutes=1)
    new = client.post("/v1/make/triggers/new-following", json={"handle": handle}, headers=AUTH).get_json()
    assert [i["id"] for i in new] == [str(victim["user"]["id"])]
    assert new[0]["event"] == "new_following"


def test_an_interrupted_sweep_emits_nothing_and_a_held_sweep_is_not_paid_twice(env):
    client, svc, fake, now = env
    handle = unique_handle()
    ids = [str(a["user"]["id"]) for a in fake.seed(handle, 150)]
    assert unfollows(client, handle) == []
    watch_id = _watch_id(svc)
    fake.unfollow(handle, ids[7])
    now[0] += dt.timedelta(hours=24)
    fake.fail_next(400)                            # the sweep's first page is refused (not retried)
    result = sweeps.run_if_due(svc, watch_id, API_KEY, Platform.API, Meter())
    assert result is not None and not result.complete
    assert _unfollow_events(svc) == []
    now[0] += dt.timedelta(minutes=svc.settings.sweep_retry_minutes)
    # A sweep held by another process (a killed worker's claim) is neither repeated nor paid.
    with svc.sessions.begin() as session:
        session.get(UnfollowSweep, watch_id).claim_until = now[0] + dt.timedelta(minutes=5)
    spent(fake)
    assert sweeps.run_if_due(svc, watch_id, API_KEY, Platform.API, Meter()) is None
    assert spent(fake) == 0
    now[0] += dt.timedelta(minutes=6)              # the claim expired: the sweep restarts
    result = sweeps.run_if_due(svc, watch_id, API_KEY, Platform.API, Meter())
    assert result.complete and result.unfollows == 1
    assert [e.account_id for e in _unfollow_events(svc)] == [ids[7]]


def test_the_page_cap_interrupts_a_sweep(database_url, fake_upstream):
    app = make_test_app(database_url, fake_upstream.url, sweep_page_cap=2)
    client, svc = app.test_client(), app.extensions["tiktok_following"]
    handle = unique_handle()
    fake_upstream.seed(handle, 250)
    assert unfollows(client, handle) == []
    with svc.sessions() as session:
        row = session.scalar(select(UnfollowSweep))
        assert row.accounts is None and row.interruptions == 1 and row.next_sweep_at is not None
    svc.engine.dispose()


def test_the_worker_sweeps_for_unfollow_subscriptions_and_writes_their_deliveries_only(env):
    client, svc, fake, now = env
    handle = unique_handle()
    ids = [str(a["user"]["id"]) for a in fake.seed(handle, 60)]
    body = {"handle": handle, "targetUrl": "http://127.0.0.1:9/hook"}
    on_unfollow = client.post("/v1/zapier/hooks", json={**body, "event": "unfollowed", "sweepEvery": 6},
                              headers=AUTH).get_json()
    on_follow = client.post("/v1/zapier/hooks", json={**body, "targetUrl": "http://127.0.0.1:9/other"},
                            headers=AUTH).get_json()
    assert on_unfollow["event"] == "unfollowed" and on_follow["event"] == "new_following"
    worker = Worker(svc)
    try:
        assert worker.sweep_due() == 1             # the recording sweep
        assert worker.sweep_due() == 0             # not due again before 6 hours
        fake.unfollow(handle, ids[2])
        fake.follow(handle)
        now[0] += dt.timedelta(hours=6)
        worker.refresh_due()
        assert worker.sweep_due() == 1
    finally:
        worker.close()
    with svc.sessions() as session:
        rows = session.execute(select(Delivery.subscription_id, Event.event, Event.account_id)
                               .join(Event, Event.id == Delivery.event_id)).all()
    assert (on_unfollow["id"], "unfollowed", ids[2]) in rows
    assert all(sub == on_unfollow["id"] for sub, kind, _ in rows if kind == "unfollowed")
    assert all(sub == on_follow["id"] for sub, kind, _ in rows if kind == "new_following")


def test_a_refresh_sees_an_unfollow_among_the_newest_for_no_extra_credit(env):
    client, svc, fake, now = env
    handle, entries, ids, watch_id = _swept(client, svc, fake)
    spent(fake)
    charged = _watch_credits(svc, watch_id)
    fake.unfollow(handle, ids[4])                   # one of its 10 newest
    now[0] += dt.timedelta(minutes=15)
    response = client.post("/v1/zapier/triggers/new-following", json={"handle": handle}, headers=AUTH)
    assert response.status_code == 200
    # The refresh's own page, nothing more: the header, the upstream and the ledger agree.
    assert response.headers["X-Credits-Used"] == "1" and spent(fake) == 1
    assert _watch_credits(svc, watch_id) == charged + 1
    events = _unfollow_events(svc)
    assert [e.account_id for e in events] == [ids[4]]
    # Exactly once: neither later refreshes nor the next sweep report it again.
    now[0] += dt.timedelta(minutes=15)
    assert [i["id"] for i in unfollows(client, handle)] == [ids[4]]
    now[0] += dt.timedelta(hours=24)
    assert [i["id"] for i in unfollows(client, handle)] == [ids[4]]  # the journal, as before
    assert len(_unfollow_events(svc)) == 1
    # Forgotten: following it again is a new follow.
    fake.follow(handle, entries[4])
    now[0] += dt.timedelta(minutes=15)
    new = client.post("/v1/zapier/triggers/new-following", json={"handle": handle}, headers=AUTH).get_json()
    assert (new[0]["id"], new[0]["event"]) == (ids[4], "new_following")


def test_a_follow_made_after_the_sweep_and_unfollowed_is_seen_by_the_next_refresh(env):
    client, svc, fake, now = env
    handle, *_ = _swept(client, svc, fake)
    newcomer = str(fake.follow(handle)["user"]["id"])
    now[0] += dt.timedelta(minutes=15)
    new = client.post("/v1/zapier/triggers/new-following", json={"handle": handle}, headers=AUTH).get_json()
    assert new[0]["id"] == newcomer                 # announced; not in the sweep's record
    fake.unfollow(handle, newcomer)
    now[0] += dt.timedelta(minutes=15)
    spent(fake)
    items = unfollows(client, handle)               # no sweep due: the refresh's page decides
    assert [i["id"] for i in items] == [newcomer] and spent(fake) == 1
    assert items[0]["uniqueId"]                     # the account as last seen
    now[0] += dt.timedelta(hours=24)
    assert [i["id"] for i in unfollows(client, handle)] == [newcomer]  # not again, by the sweep
    now[0] += dt.timedelta(minutes=15)
    assert [i["id"] for i in unfollows(client, handle)] == [newcomer]  # nor by the next refresh


def test_the_worker_refresh_delivers_free_unfollows_honouring_filters(env):
    client, svc, fake, now = env
    handle = unique_handle()
    entries = fake.seed(handle, 40)
    victim = entries[2]
    body = {"handle": handle, "event": "unfollowed"}
    everyone = client.post("/v1/zapier/hooks", json={**body, "targetUrl": "http://127.0.0.1:9/all"},
                           headers=AUTH).get_json()
    popular = client.post("/v1/zapier/hooks", json={**body, "targetUrl": "http://127.0.0.1:9/popular",
                                                    "minFollowers": victim["stats"]["followerCount"] + 1},
                          headers=AUTH).get_json()
    worker = Worker(svc)
    try:
        assert worker.sweep_due() == 1             # the recording sweep
        fake.unfollow(handle, victim["user"]["id"])
        now[0] += dt.timedelta(hours=1)
        assert worker.refresh_due() == 1
    finally:
        worker.close()
    with svc.sessions() as session:
        rows = session.execute(select(Delivery.subscription_id, Event.account_id)
                               .join(Event, Event.id == Delivery.event_id).where(Event.event == "unfollowed")).all()
        assert session.scalar(select(UnfollowSweep.sweeps)) == 1  # no second sweep: the refresh saw it
    assert rows == [(everyone["id"], str(victim["user"]["id"]))]
    assert popular["id"] != everyone["id"]


def test_a_sweep_completed_during_a_refresh_leaves_the_decision_to_the_next_one(env):
    client, svc, fake, now = env
    handle, _, ids, watch_id = _swept(client, svc, fake)
    with svc.sessions() as session:
        version = sweeps.record_version(session, watch_id)
    fake.unfollow(handle, ids[1])
    page = svc.client.fetch_page(API_KEY, handle, Platform.API.request_source, count=30, min_time=None, meter=Meter())
    pages = [Page(page.accounts, page.max_cursor, page.min_cursor, page.has_more, page.total)]
    with svc.sessions.begin() as session:
        watch = session.get(Watch, watch_id)
        assert sweeps.free_unfollows(session, watch, version + 1, pages, now[0]) == 0  # another record now
        assert sweeps.free_unfollows(session, watch, None, pages, now[0]) == 0        # none before it began
    assert _unfollow_events(svc) == []
    with svc.sessions.begin() as session:
        assert sweeps.free_unfollows(session, session.get(Watch, watch_id), version, pages, now[0]) == 1
    assert [e.account_id for e in _unfollow_events(svc)] == [ids[1]]


def test_a_refresh_and_a_sweep_running_together_announce_an_unfollow_once(env):
    client, svc, fake, now = env
    handle, _, ids, watch_id = _swept(client, svc, fake)
    fake.unfollow(handle, ids[1])
    now[0] += dt.timedelta(hours=24)
    # While a sweep holds its claim, a refresh decides nothing (the sweep's record would hold
    # what the refresh announced, read before the unfollow).
    with svc.sessions.begin() as session:
        session.get(UnfollowSweep, watch_id).claim_until = now[0] + dt.timedelta(minutes=5)
    assert watches.ensure_fresh(svc, watch_id, API_KEY, Platform.API, Meter()).unfollows == 0
    with svc.sessions.begin() as session:
        session.get(UnfollowSweep, watch_id).claim_until = None
    now[0] += dt.timedelta(minutes=1)
    # A sweep whose claim expired while it read, and a refresh that announced meanwhile: the
    # sweep decides nothing and is tried again.
    fetch, refreshed = svc.client.fetch_page, []

    def fetch_then_refresh(*args, **kwargs):
        page = fetch(*args, **kwargs)
        if not refreshed:
            refreshed.append(True)
            fake.unfollow(handle, ids[2])          # after the sweep read it
            now[0] += dt.timedelta(minutes=16)      # past the sweep's claim
            assert watches.ensure_fresh(svc, watch_id, API_KEY, Platform.API, Meter()).unfollows == 2
        return page

    svc.client.fetch_page = fetch_then_refresh
    result = sweeps.run_if_due(svc, watch_id, API_KEY, Platform.API, Meter())
    svc.client.fetch_page = fetch
    assert result.interrupted == "raced" and not result.complete
    now[0] += dt.timedelta(minutes=svc.settings.sweep_retry_minutes)
    assert sweeps.run_if_due(svc, watch_id, API_KEY, Platform.API, Meter()).complete
    now[0] += dt.timedelta(minutes=1)
    watches.ensure_fresh(svc, watch_id, API_KEY, Platform.API, Meter())
    assert sorted(e.account_id for e in _unfollow_events(svc)) == sorted([ids[1], ids[2]])


@pytest.mark.parametrize("body, field", [({"sweepEvery": 0}, "sweepEvery"), ({"sweepEvery": 169}, "sweepEvery"),
                                         ({"sweepEvery": "24"}, "sweepEvery")])
def test_bad_sweep_every_is_a_clear_400(env, body, field):
    client, *_ = env
    response = client.post("/v1/zapier/triggers/unfollowed", json={"handle": "someone", **body}, headers=AUTH)
    assert response.status_code == 400
    assert field in response.get_json()["error"]


def test_a_hook_with_an_unknown_event_is_a_clear_400(env):
    client, *_ = env
    response = client.post("/v1/zapier/hooks", json={"handle": "someone", "targetUrl": "https://example.com/h",
                                                     "event": "liked"}, headers=AUTH)
    assert response.status_code == 400 and "event" in response.get_json()["error"]


def _watch_id(svc) -> int:
    with svc.sessions() as session:
        return session.scalar(select(UnfollowSweep.watch_id))


def _swept(client, svc, fake, n: int = 40) -> tuple[str, list[dict], list[str], int]:
    """A handle following `n` accounts, its watch refreshed and swept once (the record):
    (handle, the accounts as seeded, their ids newest first, the watch id)."""
    handle = unique_handle()
    entries = fake.seed(handle, n)
    assert unfollows(client, handle) == []          # the baseline and the recording sweep
    return handle, entries, [str(e["user"]["id"]) for e in entries], _watch_id(svc)


def _watch_credits(svc, watch_id: int) -> int:
    with svc.sessions() as session:
        return ledger.watch_credits(session, [watch_id], START.date()).get(watch_id, 0)


def _unfollow_events(svc) -> list:
    with svc.sessions() as session:
        return list(session.scalars(select(Event).where(Event.event == "unfollowed")))
