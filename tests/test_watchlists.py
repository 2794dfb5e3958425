"""Watchlists (`handles`, 1 to 50) on the triggers and subscriptions: validation, one watch
per handle, items merged newest first, per-handle credits, one subscription row per handle
under one id. On SQLite and PostgreSQL, against the fake upstream over HTTP."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from integration.models import Delivery, Event, Subscription
from integration.worker import Worker
from tests.conftest import API_KEY, AUTH, clocked_app, unique_handle

START = dt.datetime(2026, 11, 26, 12, 0)
NEW, UNFOLLOWED, HOOKS = "/v1/make/triggers/new-following", "/v1/make/triggers/unfollowed", "/v1/make/hooks"


@pytest.fixture
def env(database_url, fake_upstream):
    with clocked_app(database_url, fake_upstream.url, START, page_size=30, max_subscriptions_per_key=5) as (client, svc, now):
        yield client, svc, fake_upstream, now


def post(client, url, body, status=200):
    response = client.post(url, json=body, headers=AUTH)
    assert response.status_code == status, response.get_json()
    return response


def order_key(item):
    return item["detectedAt"], int(item["eventId"])


HOOK = {"targetUrl": "https://example.com/hook"}


@pytest.mark.parametrize("url, extra", [(NEW, {}), (UNFOLLOWED, {}), (HOOKS, HOOK)])
@pytest.mark.parametrize("body, field", [
    ({"handle": "alice", "handles": ["bob"]}, "handles"),             # both
    ({}, "handle"),                                                    # neither
    ({"handles": []}, "handles"),                                      # empty
    ({"handles": [f"user{i}" for i in range(51)]}, "handles"),         # more than 50
    ({"handles": ["alice", "@Alice"]}, "handles"),                     # the same once normalized
    ({"handles": ["alice", "https://www.tiktok.com/@alice"]}, "handles"),
    ({"handles": ["alice", "not a handle!"]}, "handles"),
    ({"handles": "alice"}, "handles"),                                 # not a list
])
def test_bad_watchlists_are_a_clear_400_naming_the_field(env, url, extra, body, field):
    assert_refused(env, url, {**body, **extra}, field)


def assert_refused(env, url, body, field):
    """A 400 whose sentence and `fields` name `field`, before any upstream call."""
    client, _, fake, _ = env
    response = client.post(url, json=body, headers=AUTH)
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["code"] == "invalid_request" and field in answer["error"] and field in answer["fields"]
    assert fake.credits_spent(API_KEY) == 0


def test_a_watchlist_merges_each_handles_new_follows_newest_first_at_one_credit_per_handle(env):
    client, svc, fake, now = env
    handles = [unique_handle() for _ in range(3)]
    for handle in handles:
        fake.seed(handle, 5)
    body = {"handles": ["@" + handles[0], f"https://www.tiktok.com/@{handles[1]}", handles[2]]}
    before = fake.credits_spent(API_KEY)
    first = post(client, NEW, body)
    assert first.get_json() == [] and first.headers["X-Credits-Used"] == "3"   # three baselines
    shared = fake.follow(handles[0])
    fake.follow(handles[2], account=shared)      # the same account, followed by two watched handles
    other = fake.follow(handles[1])
    now[0] += dt.timedelta(minutes=1)
    second = post(client, NEW, body)
    assert second.headers["X-Credits-Used"] == "3" and fake.credits_spent(API_KEY) - before == 6
    items = second.get_json()
    shared_id, other_id = str(shared["user"]["id"]), str(other["user"]["id"])
    assert sorted((i["id"], i["followedBy"]) for i in items) == sorted(
        [(shared_id, handles[0]), (shared_id, handles[2]), (other_id, handles[1])])
    assert len({i["eventId"] for i in items}) == 3 and {i["event"] for i in items} == {"new_following"}
    assert items == sorted(items, key=order_key, reverse=True)
    # Later follows come first, whichever handle made them; limit cuts the merged list.
    latest = fake.follow(handles[2])
    now[0] += dt.timedelta(minutes=1)
    third = post(client, NEW, {**body, "limit": 2}).get_json()
    assert [(i["id"], i["followedBy"]) for i in third] == [(str(latest["user"]["id"]), handles[2]),
                                                          (items[0]["id"], items[0]["followedBy"])]
    # Each handle is its own watch: the single-handle trigger sees only its own events.
    alone = post(client, NEW, {"handle": handles[1]}).get_json()
    assert [i["eventId"] for i in alone] == [i["eventId"] for i in items if i["followedBy"] == handles[1]]


def test_a_watchlist_merges_unfollows_of_each_handle(env):
    client, svc, fake, now = env
    handles = [unique_handle() for _ in range(2)]
    ids = {handle: [str(a["user"]["id"]) for a in fake.seed(handle, 10)] for handle in handles}
    assert post(client, UNFOLLOWED, {"handles": handles}).get_json() == []     # recording sweeps
    fake.unfollow(handles[0], ids[handles[0]][1])
    fake.unfollow(handles[1], ids[handles[1]][2])
    now[0] += dt.timedelta(hours=24)
    items = post(client, UNFOLLOWED, {"handles": handles}).get_json()
    assert sorted((i["id"], i["unfollowedBy"]) for i in items) == sorted(
        [(ids[handles[0]][1], handles[0]), (ids[handles[1]][2], handles[1])])
    assert items == sorted(items, key=order_key, reverse=True)


def test_a_watchlist_subscription_delivers_each_handles_follows_under_one_id(env):
    client, svc, fake, now = env
    handles = [unique_handle() for _ in range(3)]
    for handle in handles:
        fake.seed(handle, 5)
    body = {"handles": handles, "targetUrl": "http://127.0.0.1:9/hook"}
    created = post(client, HOOKS, body, status=201).get_json()
    assert created["handles"] == sorted(handles) and created["secret"].startswith("whsec_")
    again = post(client, HOOKS, {**body, "handles": handles[::-1]}, status=200).get_json()
    assert again["id"] == created["id"] and again["secret"] == created["secret"]
    with svc.sessions() as session:   # one row per handle: 3 of the key's 5 subscriptions
        assert session.scalar(select(func.count()).select_from(Subscription)) == 3
    more = [unique_handle() for _ in range(3)]
    for handle in more:
        fake.seed(handle, 1)
    too_many = client.post(HOOKS, json={"handles": more,
                                        "targetUrl": "http://127.0.0.1:9/other"}, headers=AUTH)
    assert too_many.status_code == 409 and too_many.get_json()["code"] == "too_many_subscriptions"
    listed = client.get(HOOKS, headers=AUTH).get_json()
    assert [(s["id"], s["handles"]) for s in listed] == [(created["id"], sorted(handles))]

    followed = {handles[0]: fake.follow(handles[0]), handles[2]: fake.follow(handles[2])}
    now[0] += dt.timedelta(minutes=10)
    worker = Worker(svc)
    try:
        worker.refresh_due()
    finally:
        worker.close()
    with svc.sessions() as session:
        rows = session.execute(select(Delivery.subscription_id, Event.account_id)
                               .join(Event, Event.id == Delivery.event_id)).all()
        group = dict(session.execute(select(Subscription.id, Subscription.group_id)).all())
    assert sorted(account for _, account in rows) == sorted(str(a["user"]["id"]) for a in followed.values())
    assert {group[sub] for sub, _ in rows} == {created["id"]}
    deliveries = client.get(f"{HOOKS}/{created['id']}/deliveries", headers=AUTH).get_json()
    assert len(deliveries) == 2
    assert client.delete(f"{HOOKS}/{created['id']}", headers=AUTH).status_code == 204
    with svc.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0
    assert client.get(f"{HOOKS}/{created['id']}", headers=AUTH).status_code == 404


def test_an_unknown_handle_in_a_watchlist_is_named(env):
    client, _, fake, _ = env
    known = unique_handle()
    fake.seed(known, 3)
    missing = unique_handle()  # never seeded: the upstream answers 404
    response = client.post(NEW, json={"handles": [known, missing]}, headers=AUTH)
    assert response.status_code == 404
    answer = response.get_json()
    assert answer["code"] == "handle_not_found" and missing in answer["error"] and "handles" in answer["fields"]


def test_handles_not_opened_within_the_wall_clock_answer_from_their_journals(env):
    """open_all waits at most `budget_seconds`: a handle still refreshing then is answered from
    its existing watch (its journal); a handle never watched has no items yet."""
    import threading

    from integration import watchlists
    from integration.models import Watch

    client, svc, fake, now = env
    handles = [unique_handle() for _ in range(3)]
    for handle in handles[:2]:
        fake.seed(handle, 3)
    post(client, NEW, {"handles": handles[:2]})
    with svc.sessions() as session:
        watches = dict(session.execute(select(Watch.handle, Watch.id)).all())
        owner = session.scalar(select(Watch.owner_hash))
    release = threading.Event()

    def open_one(handle):
        if handle != handles[0]:
            release.wait(30)  # still refreshing when the wall clock runs out
        return watches.get(handle, -1), True

    try:
        opened, paid = watchlists.open_all(svc, owner, handles, open_one, budget_seconds=1.0)
    finally:
        release.set()
    assert opened == {handles[0]: watches[handles[0]], handles[1]: watches[handles[1]]} and paid
