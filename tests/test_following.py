"""The action: POST /v1/{platform}/following against the fake upstream."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from integration.handles import InvalidHandle, normalize_handle
from tests.conftest import AUTH

ROUTE = "/v1/{}/following"


@pytest.mark.parametrize("platform, source", [("zapier", "ZAPIER"), ("make", "MAKE_DOT_COM"), ("api", "API")])
def test_request_source_follows_the_route(client, fake_upstream, platform, source):
    fake_upstream.seed("alice", 3)
    response = client.post(ROUTE.format(platform), json={"handle": "@Alice"}, headers=AUTH)
    assert response.status_code == 200
    assert fake_upstream.requests[-1].body["requestSource"] == source
    assert fake_upstream.requests[-1].body["handle"] == "alice"


def test_one_page_without_limit_passes_count_and_min_time(client, fake_upstream):
    accounts = fake_upstream.seed("alice", 50)
    first = client.post(ROUTE.format("api"), json={"handle": "alice", "count": 10}, headers=AUTH).get_json()
    assert [a["id"] for a in first["following"]] == [e["user"]["id"] for e in accounts[:10]]
    assert first["hasMore"] is True and first["pages"] == 1
    second = client.post(ROUTE.format("api"), json={"handle": "alice", "count": 10, "minTime": first["nextMinTime"]},
                         headers=AUTH).get_json()
    assert [a["id"] for a in second["following"]] == [e["user"]["id"] for e in accounts[10:20]]
    assert fake_upstream.requests[-1].body["minTime"] == first["nextMinTime"]


def test_flat_account_shape(client, fake_upstream):
    entry = fake_upstream.seed("alice", 1)[0]
    account = client.post(ROUTE.format("api"), json={"handle": "alice"}, headers=AUTH).get_json()["following"][0]
    user, stats = entry["user"], entry["stats"]
    assert account == {
        "id": user["id"], "uniqueId": user["uniqueId"], "nickname": user["nickname"],
        "profileUrl": f"https://www.tiktok.com/@{user['uniqueId']}", "avatarThumb": user["avatarThumb"],
        "signature": user["signature"], "verified": user["verified"], "privateAccount": user["privateAccount"],
        "secUid": user["secUid"], **stats,
    }


def test_limit_collects_across_pages_following_min_cursor(client, fake_upstream):
    accounts = fake_upstream.seed("alice", 95)
    body = client.post(ROUTE.format("api"), json={"handle": "alice", "limit": 60, "count": 25}, headers=AUTH)
    data = body.get_json()
    assert [a["id"] for a in data["following"]] == [e["user"]["id"] for e in accounts[:60]]
    assert data["pages"] == 3 and body.headers["X-Credits-Used"] == "3"
    asked = [r.body for r in fake_upstream.requests]
    # Later pages start one second after the previous page's minCursor (a follow sharing that
    # second is not skipped) and ask one more for the repeated boundary account; the last page
    # asks only for what is missing.
    assert [b.get("count") for b in asked] == [25, 26, 11]
    assert "minTime" not in asked[0]
    times = [t for t, _ in fake_upstream.following("alice")]
    assert [b["minTime"] for b in asked[1:]] == [times[24] + 1, times[49] + 1]
    assert data["hasMore"] is True
    rest = client.post(ROUTE.format("api"), json={"handle": "alice", "limit": 1000, "minTime": data["nextMinTime"]},
                       headers=AUTH).get_json()
    assert [a["id"] for a in rest["following"]] == [e["user"]["id"] for e in accounts[60:]]
    assert rest["hasMore"] is False and rest["nextMinTime"] is None


def test_limit_stops_at_has_more_false(client, fake_upstream):
    fake_upstream.seed("alice", 7)
    data = client.post(ROUTE.format("api"), json={"handle": "alice", "limit": 500}, headers=AUTH).get_json()
    assert data["count"] == 7 and data["pages"] == 1 and data["hasMore"] is False and data["nextMinTime"] is None


def test_limit_stops_at_the_page_cap(client, fake_upstream, app):
    fake_upstream.seed("alice", 300)
    data = client.post(ROUTE.format("api"), json={"handle": "alice", "limit": 1000, "count": 5}, headers=AUTH).get_json()
    cap = app.extensions["tiktok_following"].settings.page_cap
    assert data["pages"] == cap and data["count"] == 5 * cap
    assert data["hasMore"] is True and data["nextMinTime"] is not None


def test_upstream_default_count_is_not_assumed(client, fake_upstream):
    fake_upstream.seed("alice", 50)
    data = client.post(ROUTE.format("api"), json={"handle": "alice"}, headers=AUTH).get_json()
    assert "count" not in fake_upstream.requests[-1].body
    assert data["count"] == fake_upstream.default_count


def test_empty_following_list(client, fake_upstream):
    fake_upstream.seed("loner", 0)
    data = client.post(ROUTE.format("api"), json={"handle": "loner", "limit": 10}, headers=AUTH).get_json()
    assert data["following"] == [] and data["hasMore"] is False and data["nextMinTime"] is None


@pytest.mark.parametrize("raw, expected", [
    ("charlidamelio", "charlidamelio"),
    ("@CharliDAmelio", "charlidamelio"),
    ("  @khaby.lame ", "khaby.lame"),
    ("https://www.tiktok.com/@khaby.lame", "khaby.lame"),
    ("https://www.tiktok.com/@khaby.lame/video/123?lang=en", "khaby.lame"),
    ("tiktok.com/@some_user", "some_user"),
    ("m.tiktok.com/@some_user?x=1", "some_user"),
])
def test_handle_forms(raw, expected):
    assert normalize_handle(raw) == expected


@pytest.mark.parametrize("raw", ["", "@", "a", "x" * 25, "bad name", "name.", "https://evil.com/@name",
                                 "https://tiktok.com.evil.com/@name", "https://www.tiktok.com/music/x", "名前"])
def test_invalid_handles(raw):
    with pytest.raises(InvalidHandle):
        normalize_handle(raw)


@given(st.text(max_size=60))
def test_normalize_never_crashes_and_yields_valid_usernames(raw):
    try:
        name = normalize_handle(raw)
    except InvalidHandle:
        return
    assert 2 <= len(name) <= 24 and name == name.lower() and not name.endswith(".")


def test_follows_sharing_the_boundary_second_are_all_listed(client, fake_upstream):
    """Page boundaries inside a group of follows made in one second: none is skipped."""
    fake_upstream.seed("alice", 20)
    second = fake_upstream.following("alice")[0][0] + 100
    group = [fake_upstream.follow("alice", at=second) for _ in range(7)]
    data = client.post(ROUTE.format("api"), json={"handle": "alice", "limit": 27, "count": 5},
                       headers=AUTH).get_json()
    listed = [a["id"] for a in data["following"]]
    assert len(listed) == len(set(listed)) == 27
    assert {e["user"]["id"] for e in group} <= set(listed)
