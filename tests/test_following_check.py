"""POST /v1/{platform}/following/check: "does A follow B?" stops at the page where B is, costs
1 credit per page read, and says `complete: false` when a "no" covers only part of the list.
Against the fake upstream (a real HTTP server), on SQLite and PostgreSQL; the budget on a fake clock."""
from __future__ import annotations

import dataclasses

import pytest

from integration.errors import UpstreamFailure
from integration.following import check_follows, read_to_the_end
from integration.platforms import Platform
from integration.upstream import Meter
from tests.conftest import AUTH, make_test_app
from tests.test_following_budget import SlowUpstream

ROUTE = "/v1/{}/following/check"
PAGE = 100  # the check reads the largest pages the upstream honours (the fake: 100)


@pytest.fixture
def check(database_url, fake_upstream):
    app = make_test_app(database_url, fake_upstream.url, page_cap=4)
    client = app.test_client()

    def call(target, handle="alice", platform="zapier", status=200):
        before = fake_upstream.credits_spent()
        response = client.post(ROUTE.format(platform), json={"handle": handle, "target": target}, headers=AUTH)
        assert response.status_code == status, response.get_data(as_text=True)
        spent = fake_upstream.credits_spent() - before
        assert response.headers["X-Credits-Used"] == str(spent)
        return response.get_json(), spent

    yield call
    app.extensions["tiktok_following"].engine.dispose()


def test_found_on_page_1_costs_1_credit(check, fake_upstream):
    entries = fake_upstream.seed("alice", 250)
    target = entries[37]["user"]
    body, spent = check("https://www.tiktok.com/@" + target["uniqueId"].upper())
    assert body == {"follows": True, "account": body["account"], "complete": True, "pagesRead": 1} and spent == 1
    assert body["account"]["id"] == target["id"] and body["account"]["uniqueId"] == target["uniqueId"]
    assert [r.body.get("count") for r in fake_upstream.requests] == [PAGE]


def test_found_on_page_3_by_numeric_id_stops_there(check, fake_upstream):
    entries = fake_upstream.seed("alice", 450)
    body, spent = check(entries[2 * PAGE + 5]["user"]["id"])
    assert body["follows"] is True and body["pagesRead"] == 3 == spent
    assert body["account"]["id"] == entries[2 * PAGE + 5]["user"]["id"]


def test_not_found_after_reading_the_whole_list_is_complete(check, fake_upstream):
    fake_upstream.seed("alice", 150)
    body, spent = check("@nobody.here")
    assert body == {"follows": False, "account": None, "complete": True, "pagesRead": 2} and spent == 2


def test_not_found_within_the_page_cap_is_incomplete(check, fake_upstream):
    entries = fake_upstream.seed("alice", 5 * PAGE)
    body, spent = check(entries[-1]["user"]["uniqueId"])  # on page 5, past the cap of 4
    assert body == {"follows": False, "account": None, "complete": False, "pagesRead": 4} and spent == 4


def test_not_found_in_a_list_served_only_to_some_depth_is_incomplete(check, fake_upstream):
    fake_upstream.seed("alice", 150)
    fake_upstream.set_deviations("depth_cap_100")  # hasMore false after 100 accounts, total 150
    body, _ = check("@nobody.here")
    assert body["follows"] is False and body["complete"] is False


def test_a_total_rounded_up_is_not_a_depth_limit(check, fake_upstream):
    fake_upstream.seed("alice", 199)  # the fake rounds `total` to 200
    body, _ = check("@nobody.here")
    assert body == {"follows": False, "account": None, "complete": True, "pagesRead": 2}


@pytest.mark.parametrize("read, total, complete", [
    (0, None, True), (0, 0, True), (150, 150, True), (499, 500, True), (475, 500, True), (474, 500, False), (90, 100, True), (89, 100, False),
    (100, 150, False), (9_500, 10_000, True), (9_499, 10_000, False), (5_000, 20_000, False), (1, 11, True),
])
def test_read_to_the_end(read, total, complete):
    assert read_to_the_end(read, total) is complete


def test_an_empty_list_is_a_complete_no(check, fake_upstream):
    fake_upstream.seed("alice", 0)
    assert check("someone") == ({"follows": False, "account": None, "complete": True, "pagesRead": 1}, 1)


@pytest.mark.parametrize("body, field", [
    ({"handle": "alice"}, "target"),
    ({"handle": "alice", "target": "not a handle"}, "target"),
    ({"handle": "alice", "target": 42}, "target"),
    ({"target": "bob"}, "handle"),
])
def test_bad_input_is_400_naming_the_field(database_url, fake_upstream, body, field):
    app = make_test_app(database_url, fake_upstream.url)
    response = app.test_client().post(ROUTE.format("make"), json=body, headers=AUTH)
    app.extensions["tiktok_following"].engine.dispose()
    assert response.status_code == 400 and field in response.get_json()["fields"]
    assert fake_upstream.credits_spent() == 0


def test_upstream_errors_keep_their_mapping(check, fake_upstream):
    body, _ = check("bob", handle="nosuchlist", status=404)
    assert body["code"] == "handle_not_found"


# --- the wall-clock budget, on a fake clock (SlowUpstream: 10 accounts per page) ----------

class NamedSlowUpstream(SlowUpstream):
    """SlowUpstream's accounts with a username, as every flat account has."""

    def fetch_page(self, *args, **kwargs):
        page = super().fetch_page(*args, **kwargs)
        return dataclasses.replace(page, accounts=tuple({**a, "uniqueId": "user" + a["id"]} for a in page.accounts))


def _check(upstream, target, **kwargs):
    kwargs = {"page_cap": 100, "budget_seconds": 20.0, **kwargs}
    return check_follows(upstream, "k", "alice", target, Platform.ZAPIER, clock=upstream.clock, meter=Meter(), **kwargs)


def test_not_found_within_the_budget_is_incomplete_and_in_time():
    upstream = NamedSlowUpstream([4.0] * 100)
    body = _check(upstream, "nobody")
    assert upstream.now <= 20.0 and body["complete"] is False and 1 <= body["pagesRead"] == len(upstream.budgets) < 100


def test_found_within_the_budget():
    upstream = NamedSlowUpstream([4.0] * 100)
    assert _check(upstream, str(10_000 - 25))["follows"] is True  # page 3
    assert len(upstream.budgets) == 3


def test_a_later_page_that_fails_makes_a_no_incomplete():
    upstream = NamedSlowUpstream([1, 1, 1], failures={2: UpstreamFailure("timeout")}, pages=3)
    body = _check(upstream, "nobody")
    assert body == {"follows": False, "account": None, "complete": False, "pagesRead": 2}
