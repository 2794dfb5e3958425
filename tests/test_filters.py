"""Filters (CONTRACT.md, "Beyond new follows"): the pure rule, and the service applying it on
the action, the polling trigger and subscriptions; a filter changes what is shown, never what
is detected. On SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from hypothesis import example, given, strategies as st
from sqlalchemy import func, select

from integration.filters import Filters
from integration.items import BASELINE_SAMPLES
from integration.models import Delivery, Event
from tests.conftest import AUTH, make_test_app


def account(**over):
    base = {"id": "1", "uniqueId": "dumpling.kitchen", "nickname": "Dumpling Kitchen",
            "signature": "Hand-folded FOOD every day", "verified": False, "privateAccount": False,
            "followerCount": 500}
    return {**base, **over}


@pytest.mark.parametrize("request_filters, acc, kept", [
    ({}, account(), True),
    ({"verifiedOnly": True}, account(), False),
    ({"verifiedOnly": True}, account(verified=True), True),
    ({"verifiedOnly": False}, account(), True),
    ({"excludePrivate": True}, account(privateAccount=True), False),
    ({"excludePrivate": True}, account(), True),
    ({"minFollowers": 500}, account(), True),
    ({"minFollowers": 501}, account(), False),
    ({"maxFollowers": 500}, account(), True),
    ({"maxFollowers": 499}, account(), False),
    ({"minFollowers": 0, "maxFollowers": 0}, account(followerCount=0), True),
    ({"keywords": ["food"]}, account(), True),                        # bio, other case
    ({"keywords": ["KITCHEN"]}, account(signature=""), True),         # username / display name
    ({"keywords": ["cats", "dogs"]}, account(), False),
    ({"keywords": ["cats", "every day"]}, account(), True),           # any one is enough
    ({"keywords": ["food"], "verifiedOnly": True}, account(), False),  # every filter must pass
])
def test_keep(request_filters, acc, kept):
    assert Filters.from_request(request_filters).keep(acc) is kept


@given(st.fixed_dictionaries({}, optional={
    "verifiedOnly": st.booleans(), "excludePrivate": st.booleans(),
    "minFollowers": st.integers(0, 10**12), "maxFollowers": st.integers(0, 10**12),
    "keywords": st.lists(st.text(min_size=1, max_size=100), min_size=1, max_size=20)}))
@example({"minFollowers": 0})
def test_stored_filters_round_trip(request_filters):
    filters = Filters.from_request(request_filters)
    assert Filters.from_json(filters.to_json()) == filters


# --- the service ------------------------------------------------------------------------

@pytest.fixture
def svc_app(database_url, fake_upstream):
    app = make_test_app(database_url, fake_upstream.url, page_size=30, page_cap=4)
    yield app
    app.extensions["tiktok_following"].engine.dispose()


def post(app, path, body, platform="api"):
    return app.test_client().post(f"/v1/{platform}/{path}", json=body, headers=AUTH)


def verified_ids(entries):  # fake account i is verified when i % 10 == 0
    return [e["user"]["id"] for e in entries if e["user"]["verified"]]


@pytest.mark.parametrize("path", ["following", "triggers/new-following", "hooks"])
@pytest.mark.parametrize("body, field", [
    ({"minFollowers": 10, "maxFollowers": 9}, "minFollowers"),
    ({"minFollowers": -1}, "minFollowers"),
    ({"maxFollowers": "many"}, "maxFollowers"),
    ({"keywords": []}, "keywords"),
    ({"keywords": ["x"] * 21}, "keywords"),
    ({"keywords": ["x" * 101]}, "keywords"),
    ({"keywords": [""]}, "keywords"),
    ({"verifiedOnly": "yes please"}, "verifiedOnly"),
])
def test_bad_filters_are_400_naming_the_field(svc_app, fake_upstream, path, body, field):
    fake_upstream.seed("alice", 3)
    extra = {"targetUrl": "https://example.com/h"} if path == "hooks" else {}
    response = post(svc_app, path, {"handle": "alice", **extra, **body})
    assert response.status_code == 400
    assert response.get_json()["code"] == "invalid_request" and field in response.get_json()["fields"]
    assert fake_upstream.credits_spent() == 0


def test_action_filters_per_page_and_counts_kept_accounts(svc_app, fake_upstream):
    entries = fake_upstream.seed("alice", 40)
    body = post(svc_app, "following", {"handle": "alice", "count": 20, "verifiedOnly": True}).get_json()
    assert [a["id"] for a in body["following"]] == verified_ids(entries[:20])
    assert body["count"] == len(body["following"]) and body["pages"] == 1 and body["hasMore"] is True
    # with a limit, pages are read until `limit` accounts passed the filters
    response = post(svc_app, "following", {"handle": "alice", "count": 10, "limit": 3, "verifiedOnly": True})
    body = response.get_json()
    assert [a["id"] for a in body["following"]] == verified_ids(entries)[:3]
    assert body["pages"] == int(response.headers["X-Credits-Used"]) >= 3  # a filtered page still costs


def test_trigger_filters_items_but_not_detection(svc_app, fake_upstream):
    fake_upstream.seed("alice", 5)
    assert post(svc_app, "triggers/new-following", {"handle": "alice"}, "make").get_json() == []
    new = [fake_upstream.follow("alice") for _ in range(12)]
    kept = post(svc_app, "triggers/new-following", {"handle": "alice", "verifiedOnly": True}, "make").get_json()
    assert [i["id"] for i in kept] == verified_ids(reversed(new)) and kept
    # the journal kept every event: without the filter (or with another) nothing is lost or replayed
    everything = post(svc_app, "triggers/new-following", {"handle": "alice"}, "make").get_json()
    assert [i["id"] for i in everything] == [e["user"]["id"] for e in reversed(new)]
    kept_ids = {i["eventId"] for i in kept}
    assert {i["eventId"] for i in everything if i["id"] in {k["id"] for k in kept}} == kept_ids
    # `limit` counts kept items
    one = post(svc_app, "triggers/new-following", {"handle": "alice", "verifiedOnly": True, "limit": 1},
               "make").get_json()
    assert one == kept[:1]


def test_zapier_baseline_samples_are_filtered_too(svc_app, fake_upstream):
    entries = fake_upstream.seed("alice", 25)
    # The newest two (of the few samples stored): one verified, one not.
    plain = next(e for e in entries if not e["user"]["verified"])
    fake_upstream.follow("alice", account=plain)
    verified = fake_upstream.follow("alice", account=next(e for e in entries if e["user"]["verified"]))
    items = post(svc_app, "triggers/new-following", {"handle": "alice", "verifiedOnly": True}, "zapier").get_json()
    moved = {verified["user"]["id"], plain["user"]["id"]}
    samples = [verified, plain, *(e for e in entries if e["user"]["id"] not in moved)][:BASELINE_SAMPLES]
    assert [i["id"] for i in items] == verified_ids(samples) and items[0]["id"] == verified["user"]["id"]
    assert all(i["sequence"] == 0 and i["eventId"].startswith("b") for i in items)


def _deliveries(app, sub_id):
    svc = app.extensions["tiktok_following"]
    with svc.sessions() as session:
        return set(session.scalars(select(Event.account_id).join(Delivery, Delivery.event_id == Event.id)
                                   .where(Delivery.subscription_id == sub_id)))


def _events(app):
    with app.extensions["tiktok_following"].sessions() as session:
        return session.scalar(select(func.count()).select_from(Event))


def test_subscription_filters_decide_deliveries_and_changing_them_neither_replays_nor_loses(svc_app, fake_upstream):
    fake_upstream.seed("alice", 5)
    target = "http://127.0.0.1:9/hook"
    first = post(svc_app, "hooks", {"handle": "alice", "targetUrl": target, "verifiedOnly": True})
    assert first.status_code == 201 and first.get_json()["filters"] == {"verifiedOnly": True}
    sub_id = first.get_json()["id"]
    batch1 = [fake_upstream.follow("alice") for _ in range(12)]
    post(svc_app, "triggers/new-following", {"handle": "alice"}, "make")  # refreshes the shared watch
    assert _deliveries(svc_app, sub_id) == set(verified_ids(batch1)) and _events(svc_app) == 12
    # re-subscribing (Zapier / Make after an edit) with other filters replaces them ...
    again = post(svc_app, "hooks", {"handle": "alice", "targetUrl": target, "keywords": ["user"]})
    assert again.status_code == 200 and again.get_json()["id"] == sub_id
    assert again.get_json()["filters"] == {"keywords": ["user"]}
    assert _deliveries(svc_app, sub_id) == set(verified_ids(batch1))  # ... nothing replayed
    batch2 = [fake_upstream.follow("alice") for _ in range(3)]
    post(svc_app, "triggers/new-following", {"handle": "alice"}, "make")
    # ... and they decide about the next events (all of them match "user"): nothing lost
    assert _deliveries(svc_app, sub_id) == set(verified_ids(batch1)) | {e["user"]["id"] for e in batch2}
    # without filters again: stored as none
    plain = post(svc_app, "hooks", {"handle": "alice", "targetUrl": target}).get_json()
    assert plain["filters"] is None
