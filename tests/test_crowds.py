""""Followed by many" (`triggers/followed-by-many`, hooks with `event: followed_by_many`):
validation, one item per account when the threshold is crossed, the window, signed
deliveries, a crash between refresh and evaluation, the per-key bound and retention. On
SQLite and PostgreSQL, against the fake upstream over HTTP and a real webhook receiver."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from integration import crowds, retention, watches
from integration.models import Crowd, CrowdFired, Event, Subscription, Watch
from integration.platforms import Platform
from integration.upstream import Meter
from integration.worker import Worker
from tests.conftest import API_KEY, AUTH, clocked_app, unique_handle
from tests.receiver import Receiver
from tests.test_watchlists import assert_refused, post

START = dt.datetime(2026, 11, 26, 12, 0)
TRIGGER, NEW, HOOKS = "/v1/make/triggers/followed-by-many", "/v1/make/triggers/new-following", "/v1/make/hooks"
INTERVAL = dt.timedelta(seconds=301)  # just past the test app's POLL_INTERVAL_SECONDS


@pytest.fixture
def env(database_url, fake_upstream):
    with clocked_app(database_url, fake_upstream.url, START, page_size=30, max_crowds_per_key=3) as (client, svc, now):
        yield client, svc, fake_upstream, now


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def watchlist(fake, n=3) -> list[str]:
    handles = [unique_handle() for _ in range(n)]
    for handle in handles:
        fake.seed(handle, 3)
    return handles


def poll(client, now, body, minutes=1) -> list[dict]:
    now[0] += dt.timedelta(minutes=minutes)
    return post(client, TRIGGER, body).get_json()


def crossed(items) -> list[tuple[str, list[str]]]:
    return [(item["id"], item["followedByHandles"]) for item in items]


@pytest.mark.parametrize("body, field", [
    ({"handles": ["alice"]}, "handles"),                                      # one handle
    ({"handles": [f"user{i}" for i in range(51)]}, "handles"),                # more than 50
    ({"handles": ["alice", "@Alice"]}, "handles"),                            # the same once normalized
    ({"handle": "alice"}, "handles"),                                         # a single handle
    ({"handles": ["alice", "bob"], "minHandles": 1}, "minHandles"),
    ({"handles": ["alice", "bob"], "minHandles": 3}, "minHandles"),           # more than the handles
    ({"handles": ["alice", "bob"], "withinDays": 0}, "withinDays"),
    ({"handles": ["alice", "bob"], "withinDays": 91}, "withinDays"),
    ({"handles": ["alice", "bob"], "afterSequence": 3}, "afterSequence"),    # sequences are per handle
    ({"handles": ["alice", "bob"], "minimum": 2}, "minimum"),                 # unknown key
])
@pytest.mark.parametrize("url, extra", [(TRIGGER, {}), (HOOKS, {"targetUrl": "https://example.com/h",
                                                                "event": "followed_by_many"})])
def test_bad_requests_are_a_clear_400_naming_the_field(env, body, field, url, extra):
    assert_refused(env, url, {**body, **extra}, field)


def test_crowd_fields_are_refused_on_other_events(env):
    assert_refused(env, HOOKS, {"handles": ["alice", "bob"], "targetUrl": "https://example.com/h", "minHandles": 2},
                   "minHandles")


def test_two_handles_following_an_account_fire_once_and_a_third_does_not_fire_again(env):
    client, svc, fake, now = env
    a, b, c = watchlist(fake)
    body = {"handles": [a, b, c]}
    first = post(client, TRIGGER, body)
    assert first.get_json() == [] and first.headers["X-Credits-Used"] == "3"   # three baselines
    x = fake.follow(a)
    fake.follow(c)                                     # another account, one handle only
    assert poll(client, now, body) == []
    fake.follow(b, account=x)
    now[0] += dt.timedelta(minutes=1)
    second = post(client, TRIGGER, body)
    assert second.headers["X-Credits-Used"] == "3"     # one refresh per handle, as new follows
    items = second.get_json()
    assert crossed(items) == [(str(x["user"]["id"]), [a, b])]
    item = items[0]
    assert item["event"] == "followed_by_many" and item["followedByCount"] == 2 and item["eventId"].isdigit()
    assert {"uniqueId", "nickname", "detectedAt", "sequence"} <= item.keys()
    fake.follow(c, account=x)                          # a third handle: no second crossing
    assert poll(client, now, body) == items
    # Filters apply to what is shown (the crossing is not lost): none over a billion followers.
    assert poll(client, now, {**body, "minFollowers": 10**9}) == []
    assert poll(client, now, {**body, "since": "2030-01-01T00:00:00Z"}) == []
    # The same handles in another order are the same crowd; another minHandles is another.
    assert poll(client, now, {"handles": [c, a, b]}) == items
    assert poll(client, now, {**body, "minHandles": 3}) == []  # X was at 3 before this crowd existed
    with svc.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Crowd)) == 2
        assert session.scalar(select(func.count()).select_from(Event).where(Event.crowd_id.is_not(None))) == 1
    # The new-following trigger is untouched by the crowd's events.
    assert {i["event"] for i in post(client, NEW, {"handles": [a, b, c]}).get_json()} == {"new_following"}


def scenario(client, fake, now, polls_after: set[int]) -> list[tuple[str, list[str]]]:
    """One script of follows over a fresh 3-handle crowd, polled after the steps listed."""
    handles = watchlist(fake)
    body = {"handles": handles}
    post(client, TRIGGER, body)
    x, y, z = (fake.follow(handles[0]) for _ in range(3))
    steps = [(1, x), (2, y), (1, y), (2, x), (1, z), (2, z)]
    for index, (who, account) in enumerate(steps):
        fake.follow(handles[who], account=account)
        if index in polls_after:
            poll(client, now, body)
    items = poll(client, now, body)
    names = {str(acc["user"]["id"]): label for label, acc in (("x", x), ("y", y), ("z", z))}
    where = {handle: str(i) for i, handle in enumerate(handles)}
    return sorted((names[item["id"]], sorted(where[h] for h in item["followedByHandles"])) for item in items)


def test_polls_split_differently_give_the_same_items(env):
    client, _, fake, now = env
    expected = [("x", ["0", "1"]), ("y", ["0", "2"]), ("z", ["0", "1"])]
    assert scenario(client, fake, now, {0, 1, 2, 3, 4, 5}) == expected   # a poll after every follow
    assert scenario(client, fake, now, {1, 3, 4}) == expected  # no two handles reach an account in one poll
    # One poll for everything: follows detected in the same poll have the same time, so which
    # two handles crossed first is the journal's order; the accounts and counts are the same.
    once = scenario(client, fake, now, set())
    assert [(label, len(handles)) for label, handles in once] == [(label, 2) for label, _ in expected]


def test_follows_further_apart_than_the_window_do_not_count(env):
    client, _, fake, now = env
    a, b, c = watchlist(fake)
    body = {"handles": [a, b, c], "withinDays": 7}
    post(client, TRIGGER, body)
    x = fake.follow(a)
    assert poll(client, now, body) == []
    fake.follow(b, account=x)
    assert poll(client, now, body, minutes=8 * 24 * 60) == []   # 8 days after a's follow
    fake.follow(c, account=x)
    assert crossed(poll(client, now, body, minutes=24 * 60)) == [(str(x["user"]["id"]), [b, c])]


def test_a_subscription_gets_exactly_one_signed_delivery(env, receiver):
    client, svc, fake, now = env
    a, b, c = watchlist(fake)
    body = {"handles": [a, b, c], "targetUrl": receiver.url, "event": "followed_by_many"}
    created = post(client, HOOKS, body, status=201).get_json()
    assert created["minHandles"] == 2 and created["withinDays"] == 7 and created["event"] == "followed_by_many"
    assert post(client, HOOKS, {**body, "handles": [c, b, a]}).get_json()["id"] == created["id"]
    # Another crowd on the same handles and target is another subscription (no collision).
    other = post(client, HOOKS, {**body, "minHandles": 3}, status=201).get_json()
    assert other["id"] != created["id"] and other["minHandles"] == 3
    assert client.delete(f"{HOOKS}/{other['id']}", headers=AUTH).status_code == 204
    x = fake.follow(a)
    fake.follow(b, account=x)
    worker = Worker(svc)
    try:
        now[0] += INTERVAL
        worker.run_once()
        assert len(receiver.received) == 1
        event = Webhook(created["secret"]).verify(receiver.received[0].body, receiver.received[0].headers)
        assert event["id"] == str(x["user"]["id"]) and sorted(event["followedByHandles"]) == sorted([a, b])
        assert event["event"] == "followed_by_many" and event["followedByCount"] == 2
        fake.follow(c, account=x)
        now[0] += INTERVAL
        worker.run_once()
        assert len(receiver.received) == 1
    finally:
        worker.close()
    listed = client.get(f"{HOOKS}/{created['id']}", headers=AUTH).get_json()
    assert listed["deliveredCount"] == 1 and listed["minHandles"] == 2
    # The trigger on the same crowd answers the same event.
    assert [i["eventId"] for i in post(client, TRIGGER, {"handles": [a, b, c]}).get_json()] == [event["eventId"]]


def test_a_crash_between_refresh_and_evaluation_loses_nothing(env, receiver):
    client, svc, fake, now = env
    a, b = watchlist(fake, 2)
    created = post(client, HOOKS, {"handles": [a, b], "targetUrl": receiver.url, "event": "followed_by_many"},
                   status=201).get_json()
    x = fake.follow(a)
    fake.follow(b, account=x)
    with svc.sessions() as session:
        ids = dict(session.execute(select(Watch.handle, Watch.id)).all())
    for handle in (a, b):  # the worker's refresh, committed; the process dies before evaluating
        watches.ensure_fresh(svc, ids[handle], API_KEY, Platform.MAKE, Meter(), window=0, wait_seconds=0)
    with svc.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Event).where(Event.crowd_id.is_not(None))) == 0
    worker = Worker(svc)
    try:
        now[0] += INTERVAL
        worker.run_once()   # refreshes with no new follow, then evaluates what was skipped
    finally:
        worker.close()
    assert len(receiver.received) == 1
    event = Webhook(created["secret"]).verify(receiver.received[0].body, receiver.received[0].headers)
    assert event["id"] == str(x["user"]["id"])


def test_at_most_max_crowds_per_key(env):
    client, _, fake, _ = env
    handles = watchlist(fake)
    post(client, TRIGGER, {"handles": handles})
    post(client, TRIGGER, {"handles": handles, "withinDays": 3})
    post(client, TRIGGER, {"handles": handles, "minHandles": 3})
    spent = fake.credits_spent(API_KEY)
    response = client.post(TRIGGER, json={"handles": handles, "withinDays": 4}, headers=AUTH)
    assert response.status_code == 409 and response.get_json()["code"] == "too_many_crowds"
    hook = client.post(HOOKS, json={"handles": handles, "withinDays": 4, "event": "followed_by_many",
                                    "targetUrl": "https://example.com/h"}, headers=AUTH)
    assert hook.status_code == 409 and hook.get_json()["code"] == "too_many_crowds"
    assert fake.credits_spent(API_KEY) == spent  # refused before any upstream call
    post(client, TRIGGER, {"handles": handles[::-1]})  # an existing crowd still answers


def test_retention_deletes_idle_crowds_without_subscriptions(env, receiver):
    client, svc, fake, now = env
    a, b, c = watchlist(fake)
    post(client, TRIGGER, {"handles": [a, b]})
    x = fake.follow(a)
    fake.follow(b, account=x)
    assert len(poll(client, now, {"handles": [a, b]})) == 1
    post(client, HOOKS, {"handles": [b, c], "targetUrl": receiver.url, "event": "followed_by_many"}, status=201)
    now[0] += dt.timedelta(days=svc.settings.watch_idle_days - 1)
    assert retention.delete_idle_crowds(svc, now[0]) == 0
    now[0] += dt.timedelta(days=2)
    assert retention.delete_idle_crowds(svc, now[0]) == 1   # the trigger's crowd; the subscribed one stays
    with svc.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Crowd)) == 1
        assert session.scalar(select(func.count()).select_from(CrowdFired)) == 0
        assert session.scalar(select(func.count()).select_from(Event).where(Event.crowd_id.is_not(None))) == 0
        assert session.scalar(select(func.count()).select_from(Subscription)
                              .where(Subscription.crowd_id.is_not(None))) == 2


def test_evaluating_twice_writes_nothing_more(env):
    client, svc, fake, now = env
    a, b = watchlist(fake, 2)
    post(client, TRIGGER, {"handles": [a, b]})
    x = fake.follow(a)
    fake.follow(b, account=x)
    assert len(poll(client, now, {"handles": [a, b]})) == 1
    with svc.sessions() as session:
        crowd_id = session.scalar(select(Crowd.id))
    assert crowds.evaluate(svc, crowd_id) == 0
