"""Trigger items are built once, in the documented shape (integration/items.py), and sent
as they are: each item is exactly what its marshmallow schema would dump (no extra key, no
missing one, the same types), and no schema serialises the answer a second time.
On SQLite and PostgreSQL, against the fake upstream over HTTP."""
from __future__ import annotations

import datetime as dt

import pytest
from marshmallow import Schema

from integration import items
from schemas.account import FollowEventSchema
from schemas.unfollows import UnfollowEventSchema
from tests.conftest import AUTH, clocked_app, unique_handle

START = dt.datetime(2026, 11, 26, 12, 0)


@pytest.fixture
def env(database_url, fake_upstream):
    with clocked_app(database_url, fake_upstream.url, START, page_size=30, page_cap=4) as (client, _, now):
        client.now = now  # poll() moves it
        yield client, fake_upstream, now


def poll(client, route: str, **body) -> list[dict]:
    client.now[0] += dt.timedelta(seconds=1)  # each poll outside the last one's refresh window
    response = client.post(route, json=body, headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def assert_documented(items: list[dict], schema: Schema) -> None:
    assert items
    assert schema.validate(items) == {}
    assert schema.dump(items) == items  # what a schema pass would send: nothing added, dropped or retyped


@pytest.fixture
def dumps(monkeypatch):
    """How many objects marshmallow serialises (an answer built once needs none)."""
    calls = []
    original = Schema.dump

    def counting(self, obj, *, many=None):
        calls.append(type(self).__name__)
        return original(self, obj, many=many)

    monkeypatch.setattr(Schema, "dump", counting)
    return calls


@pytest.mark.parametrize("deviation", [None, "missing_optional", "numeric_ids"])
def test_new_follow_items_and_zapier_samples_are_the_documented_shape(env, deviation, dumps):
    client, fake, _ = env
    if deviation:
        fake.set_deviations(deviation)
    handle = unique_handle()
    fake.seed(handle, 5)
    samples = poll(client, "/v1/zapier/triggers/new-following", handle=handle)  # baseline samples
    assert [item["sequence"] for item in samples] == [0] * items.BASELINE_SAMPLES  # a few samples of the 5
    for _ in range(3):
        fake.follow(handle)
    events = poll(client, "/v1/api/triggers/new-following", handle=handle)
    assert [item["sequence"] for item in events] == [3, 2, 1]
    both = poll(client, "/v1/zapier/triggers/new-following", handle=handle, limit=6)
    assert [item["sequence"] for item in both] == [3, 2, 1] + [0] * items.BASELINE_SAMPLES
    other = unique_handle()
    fake.seed(other, 2)
    merged = poll(client, "/v1/make/triggers/new-following", handles=[handle, other])
    assert dumps == []  # no schema pass over any answer
    for answer in (samples, events, both, merged):
        assert_documented(answer, FollowEventSchema(many=True))


def test_unfollow_items_are_the_documented_shape(env, dumps):
    client, fake, now = env
    handle = unique_handle()
    ids = [str(entry["user"]["id"]) for entry in fake.seed(handle, 40)]
    route = "/v1/api/triggers/unfollowed"
    assert poll(client, route, handle=handle) == []  # the first sweep only records the list
    fake.unfollow(handle, ids[3])
    now[0] += dt.timedelta(hours=25)
    items = poll(client, route, handle=handle)
    assert [item["id"] for item in items] == [ids[3]]
    assert dumps == []
    assert_documented(items, UnfollowEventSchema(many=True))


@pytest.mark.parametrize("limit", [1, 2, 3, 50])
def test_filtered_items_are_read_in_batches_without_losing_or_repeating_any(env, monkeypatch, limit):
    client, fake, _ = env
    monkeypatch.setattr(items, "BATCH", 2)  # many batch boundaries in a short journal
    handle = unique_handle()
    fake.seed(handle, 3)
    poll(client, "/v1/api/triggers/new-following", handle=handle)
    new = [fake.follow(handle) for _ in range(9)]
    everything = poll(client, "/v1/api/triggers/new-following", handle=handle, limit=50)
    assert [item["id"] for item in everything] == [str(e["user"]["id"]) for e in reversed(new)]
    kept = poll(client, "/v1/api/triggers/new-following", handle=handle, limit=limit, verifiedOnly=True)
    expected = [item for item in everything if item["verified"]][:limit]
    assert expected and kept == expected
