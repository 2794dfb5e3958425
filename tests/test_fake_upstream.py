"""The fake DumplingAI upstream, exercised over real HTTP."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from fakeupstream import API_PATH, FakeDumpling, make_account

KEY = "sk_test"
ENTRY_USER_KEYS = {"id", "uniqueId", "nickname", "avatarThumb", "signature", "verified", "secUid", "privateAccount"}
ENTRY_STATS_KEYS = {"followerCount", "followingCount", "heartCount", "videoCount", "diggCount"}


@pytest.fixture
def fake():
    with FakeDumpling().start() as server:
        server.add_key(KEY)
        yield server


def call(fake, body=None, key=KEY, raw=None, timeout=10, **kwargs):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if raw is not None:
        return requests.post(fake.url + API_PATH, data=raw, headers=headers, timeout=timeout, **kwargs)
    return requests.post(fake.url + API_PATH, json=body, headers=headers, timeout=timeout, **kwargs)


def ids(entries):
    return [entry["user"]["id"] for entry in entries]


# ---- success and paging --------------------------------------------------
def test_make_account_is_upstream_shaped():
    entry = make_account(7)
    assert set(entry) == {"user", "stats"}
    assert set(entry["user"]) == ENTRY_USER_KEYS and set(entry["stats"]) == ENTRY_STATS_KEYS
    assert re.fullmatch(r"\d{19}", entry["user"]["id"]) and entry["user"]["uniqueId"] == "user7"
    assert entry["user"]["avatarThumb"].startswith("https://")
    assert make_account(8)["user"]["id"] != entry["user"]["id"]


def test_paging_by_min_cursor_walks_every_account_once_in_order(fake):
    seeded = fake.seed("walker", 95)
    times = [t for t, _ in fake.following("walker")]
    assert times == sorted(set(times), reverse=True)  # distinct, newest first

    seen, pages, body = [], [], {"handle": "walker", "count": 10}
    while True:
        response = call(fake, body)
        assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
        page = response.json()
        pages.append(page)
        first, last = len(seen), len(seen) + len(page["followingList"]) - 1
        assert (page["maxCursor"], page["minCursor"]) == (times[first], times[last])
        assert page["total"] == 100  # 95 rounded: approximate on purpose
        seen += ids(page["followingList"])
        if not page["hasMore"]:
            break
        body = {"handle": "walker", "count": 10, "minTime": page["minCursor"]}
    assert seen == ids(seeded)
    assert len(pages) == 10 and len(pages[-1]["followingList"]) == 5
    assert fake.credits_spent(KEY) == 10


def test_default_count_and_clamp(fake):
    fake.seed("big", 150)
    assert len(call(fake, {"handle": "big"}).json()["followingList"]) == 20
    assert len(call(fake, {"handle": "big", "count": 5}).json()["followingList"]) == 5
    page = call(fake, {"handle": "big", "count": 500}).json()
    assert len(page["followingList"]) == 100 and page["hasMore"] is True
    fake.default_count, fake.max_count = 7, 120
    assert len(call(fake, {"handle": "big"}).json()["followingList"]) == 7
    assert len(call(fake, {"handle": "big", "count": 500}).json()["followingList"]) == 120


def test_empty_pages_and_case_insensitive_handles(fake):
    fake.seed("Nobody", 0)
    empty = {"followingList": [], "maxCursor": 0, "minCursor": 0, "hasMore": False, "total": 0}
    assert call(fake, {"handle": "nOBODY"}).json() == empty
    fake.seed("few", 3, start_time=1_700_000_000)
    assert call(fake, {"handle": "few", "minTime": 1_600_000_000}).json() == {**empty, "total": 0}
    assert len(call(fake, {"handle": "FEW"}).json()["followingList"]) == 3


def test_follow_and_unfollow(fake):
    fake.seed("star", 3)
    newest_before = fake.following("star")[0][0]
    followed = [fake.follow("star") for _ in range(3)]  # same second: still unique, increasing
    times = [t for t, _ in fake.following("star")]
    assert times[0] > times[1] > times[2] > newest_before and times[2] >= int(time.time()) - 1
    assert ids(call(fake, {"handle": "star", "count": 3}).json()["followingList"]) == ids(followed[::-1])

    assert fake.unfollow("star", followed[-1]["user"]["id"]) is True
    assert fake.unfollow("star", "nope") is False
    assert followed[-1]["user"]["id"] not in ids(e for _, e in fake.following("star"))

    old = fake.follow("star", make_account(999), at=1)  # explicit time: lands last
    assert fake.following("star")[-1] == (1, old)
    assert fake.follow("newcomer")["user"]["uniqueId"].startswith("user")
    assert call(fake, {"handle": "newcomer"}).status_code == 200


def test_request_source_is_accepted_and_recorded(fake):
    fake.seed("src", 1)
    for source in ("MAKE_DOT_COM", "ZAPIER", "API"):
        assert call(fake, {"handle": "src", "requestSource": source}).status_code == 200
    assert [r.body.get("requestSource") for r in fake.requests] == ["MAKE_DOT_COM", "ZAPIER", "API"]
    assert all(r.key == KEY and r.status == 200 and r.time > 0 for r in fake.requests)


# ---- documented errors ---------------------------------------------------
BAD_HANDLE = "'handle' parameter is required and must be a non-empty string."


@pytest.mark.parametrize(
    "kwargs, status, message",
    [
        ({"body": {"handle": "x"}, "key": None}, 401, "API key is invalid or missing."),
        ({"body": {"handle": "x"}, "key": "unknown"}, 401, "API key is invalid or missing."),
        ({"raw": "{not json"}, 400, "Invalid JSON in request body"),
        ({"body": {}}, 400, BAD_HANDLE),
        ({"body": {"handle": ""}}, 400, BAD_HANDLE),
        ({"body": {"handle": 42}}, 400, BAD_HANDLE),
        ({"body": ["x"]}, 400, BAD_HANDLE),
        ({"body": {"handle": "x", "count": -1}}, 400, None),
        ({"body": {"handle": "x", "count": "10"}}, 400, None),
        ({"body": {"handle": "x", "minTime": True}}, 400, None),
        ({"body": {"handle": "x", "requestSource": "SLACK"}}, 400, None),
        ({"body": {"handle": "ghost"}}, 404, "Following list not found for user: ghost"),
    ],
)
def test_documented_errors(fake, kwargs, status, message):
    response = call(fake, **kwargs)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert {"X-RateLimit-Limit", "X-RateLimit-Remaining"} <= set(response.headers)
    error = response.json()["error"]
    assert error == message if message else error
    assert fake.requests[-1].status == status and fake.credits_spent() == 0


def test_credits_are_spent_only_by_successes(fake):
    fake.add_key("poor", credits=2)
    fake.seed("h", 5)
    assert call(fake, {"handle": "ghost"}, key="poor").status_code == 404
    assert call(fake, {}, key="poor").status_code == 400
    fake.fail_next(500)
    assert call(fake, {"handle": "h"}, key="poor").status_code == 500
    assert [call(fake, {"handle": "h"}, key="poor").status_code for _ in range(2)] == [200, 200]
    broke = call(fake, {"handle": "h"}, key="poor")
    assert broke.status_code == 403
    assert broke.json() == {"error": "Insufficient credits. Please top up your account."}
    assert call(fake, {"handle": "h"}).status_code == 200  # other (unlimited) key unaffected
    assert (fake.credits_spent("poor"), fake.credits_spent(KEY), fake.credits_spent()) == (2, 1, 3)


@pytest.mark.parametrize("status, message", [
    (400, "The following service could not process the handle."),
    (401, "API key is invalid or missing."),
    (403, "Insufficient credits. Please top up your account."),
    (404, "Following list not found for user: h"),
    (429, "Rate limit exceeded. Please try again later."),
    (500, "An unexpected server error occurred while fetching the TikTok user following: simulated failure"),
    (502, "Received invalid data structure from following service."),
    (503, "Rate limit exceeded. Please try again later."),
])
def test_fail_next_answers_the_documented_body(fake, status, message):
    fake.seed("h", 1)
    fake.fail_next(status, times=2)
    for _ in range(2):
        response = call(fake, {"handle": "h"})
        assert (response.status_code, response.json()) == (status, {"error": message})
        assert response.headers["Content-Type"] == "application/json"
    assert call(fake, {"handle": "h"}).status_code == 200
    assert fake.credits_spent() == 1


def test_fail_next_custom_body_and_headers(fake):
    fake.seed("h", 1)
    fake.fail_next(429, body={"error": "slow down"}, headers={"Retry-After": 7})
    response = call(fake, {"handle": "h"})
    assert (response.status_code, response.json()) == (429, {"error": "slow down"})
    assert response.headers["Retry-After"] == "7"


def test_rate_limit_answers_503_with_headers(fake):
    fake.seed("h", 1)
    fake.add_key("other")
    fake.rate_limit = (3, 0.5)
    remaining = [call(fake, {"handle": "h"}).headers["X-RateLimit-Remaining"] for _ in range(3)]
    assert remaining == ["2", "1", "0"]
    limited = call(fake, {"handle": "h"})
    assert limited.status_code == 503
    assert limited.json() == {"error": "Rate limit exceeded. Please try again later."}
    assert (limited.headers["X-RateLimit-Limit"], limited.headers["X-RateLimit-Remaining"]) == ("3", "0")
    assert call(fake, {"handle": "h"}, key="other").status_code == 200  # per key
    time.sleep(0.6)  # the window slides
    assert call(fake, {"handle": "h"}).status_code == 200
    assert fake.credits_spent(KEY) == 4


def test_default_rate_headers_count_requests(fake):
    fake.seed("h", 1)
    assert [call(fake, {"handle": "h"}).headers["X-RateLimit-Remaining"] for _ in range(2)] == ["999", "998"]
    assert call(fake, {"handle": "h"}).headers["X-RateLimit-Limit"] == "1000"


# ---- malformed, slow, concurrent -----------------------------------------
@pytest.mark.parametrize("kind", ["shape", "not_json", "html", "empty"])
def test_malformed_bodies(fake, kind):
    fake.seed("h", 1)
    fake.malformed_next(kind)
    response = call(fake, {"handle": "h"})
    assert response.status_code == 200
    if kind == "shape":
        assert "followingList" not in response.json()
    elif kind == "html":
        assert response.headers["Content-Type"].startswith("text/html") and response.text.startswith("<")
    elif kind == "empty":
        assert response.content == b""
    else:
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.text)
    assert fake.credits_spent() == 0  # as bad as a 502: free
    assert "followingList" in call(fake, {"handle": "h"}).json()


def test_delay_and_hang(fake):
    fake.seed("h", 1)
    fake.delay = 0.3
    started = time.monotonic()
    assert call(fake, {"handle": "h"}).status_code == 200
    assert time.monotonic() - started >= 0.3
    fake.delay = 0.0
    fake.hang_next(1.0)
    with pytest.raises(requests.Timeout):
        call(fake, {"handle": "h"}, timeout=0.3)
    started = time.monotonic()
    assert call(fake, {"handle": "h"}).status_code == 200  # answered while the hung one sleeps
    assert time.monotonic() - started < 0.5


def test_concurrent_slow_requests_run_in_parallel(fake):
    fake.seed("h", 30)
    fake.delay = 0.5
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: call(fake, {"handle": "h"}).status_code, range(50)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 50
    assert elapsed < 5, f"50 requests with a 0.5 s delay took {elapsed:.1f} s"
    assert fake.credits_spent() == 50 and len(fake.requests) == 50


def test_stop_makes_the_upstream_unreachable():
    fake = FakeDumpling().start()
    fake.add_key(KEY)
    fake.seed("h", 1)
    session = requests.Session()  # a kept-alive connection must be cut too
    assert session.post(fake.url + API_PATH, json={"handle": "h"},
                        headers={"Authorization": f"Bearer {KEY}"}, timeout=5).status_code == 200
    fake.stop()
    with pytest.raises(requests.ConnectionError):
        session.post(fake.url + API_PATH, json={"handle": "h"}, timeout=5)


# ---- control API and CLI -------------------------------------------------
def test_http_control_api(fake):
    control = fake.url + "/_fake/"
    assert requests.post(control + "reset").json() == {"ok": True}
    assert call(fake, {"handle": "h"}).status_code == 401  # reset removed KEY
    requests.post(control + "keys", json={"key": "node", "credits": 5}).raise_for_status()
    seeded = requests.post(control + "handles/Node%20Fan/seed", json={"n": 4}).json()
    assert len(seeded) == 4 and set(seeded[0]) == {"user", "stats"}
    entry = requests.post(control + "handles/node fan/follow", json={}).json()
    mine = requests.post(control + "handles/node fan/follow",
                         json={"account": make_account(500), "at": 5}).json()
    assert mine == make_account(500)
    assert requests.post(control + "handles/node fan/unfollow", json={"id": seeded[0]["user"]["id"]}).json() == {"removed": True}
    listed = requests.get(control + "handles/node fan/following").json()
    assert [item["entry"]["user"]["id"] for item in listed] == ids([entry] + seeded[1:] + [mine])

    requests.post(control + "faults", json={"status": 502, "times": 1}).raise_for_status()
    requests.post(control + "faults", json={"malformed": "html"}).raise_for_status()
    assert requests.post(control + "faults", json={"status": "bad"}).status_code == 400
    assert call(fake, {"handle": "node fan"}, key="node").status_code == 502
    assert call(fake, {"handle": "node fan"}, key="node").headers["Content-Type"].startswith("text/html")
    assert call(fake, {"handle": "node fan"}, key="node").json()["total"] == 10  # 5 accounts, rounded

    logged = requests.get(control + "requests").json()
    assert [r["status"] for r in logged] == [401, 502, 200, 200]
    assert logged[-1]["key"] == "node" and logged[-1]["body"] == {"handle": "node fan"}
    assert requests.get(control + "credits").json() == {"total": 1, "byKey": {"node": 1}}  # malformed is free
    assert requests.get(control + "nowhere").status_code == 404


def test_cli_demo_serves_and_follows_until_sigterm():
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "fakeupstream", "--port", "0", "--demo", "--follow-every", "0.2"],
        cwd=root, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        line = process.stdout.readline()
        url = re.search(r"http://[\d.]+:\d+", line).group(0)
        assert "demo-key" in line
        post = lambda handle: requests.post(url + API_PATH, json={"handle": handle, "count": 100},
                                            headers={"Authorization": "Bearer demo-key"}, timeout=5).json()
        assert len(post("charlidamelio")["followingList"]) == 100 and post("charlidamelio")["total"] == 120
        first = len(post("dumplingdemo")["followingList"])
        assert first >= 45
        time.sleep(0.7)
        assert len(post("dumplingdemo")["followingList"]) > first  # new follows keep coming
        ids = lambda handle: [entry["user"]["id"] for entry in post(handle)["followingList"]]
        seen = set(ids("dumplingdemo"))
        for _ in range(10):  # past the 6th tick: the demo's unfollow
            time.sleep(0.2)
            seen |= set(ids("dumplingdemo"))
        now_following = ids("dumplingdemo")
        assert seen - set(now_following)  # one of the accounts seen was unfollowed
        twin = ids("dumplingtwin")
        assert len(twin) > 10 and set(twin[:2]) <= set(now_following)  # "followed by many" material
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        process.stdout.close()


# ---- deviations from the documented behaviour (one test per switch) ----------
DEV_HANDLE = "deviant"


def deviant(fake, *names, n=250):
    """`n` accounts, one a minute, newest a minute ago; the deviations switched on."""
    seeded = fake.seed(DEV_HANDLE, n)
    fake.set_deviations(*names)
    return seeded, [t for t, _ in fake.following(DEV_HANDLE)]


def page(fake, **body):
    response = call(fake, {"handle": DEV_HANDLE, **body})
    assert response.status_code == 200
    return response.json()


def test_no_deviation_by_default_and_reset_clears_them(fake):
    assert fake.deviations == []
    fake.set_deviations("zero_cursors", "duplicates")
    assert fake.deviations == ["duplicates", "zero_cursors"]
    with pytest.raises(ValueError, match="unknown deviation 'nope'"):
        fake.set_deviations("nope")
    fake.reset()
    assert fake.deviations == []


def test_deviation_inclusive_min_time_repeats_the_boundary_account(fake):
    seeded, times = deviant(fake, "inclusive_min_time")
    first = page(fake, count=10)
    second = page(fake, count=10, minTime=first["minCursor"])
    assert ids(second["followingList"])[0] == ids(first["followingList"])[-1] == ids(seeded)[9]
    assert second["maxCursor"] == first["minCursor"] == times[9]


def test_deviation_millisecond_cursors(fake):
    seeded, times = deviant(fake, "millisecond_cursors")
    first = page(fake, count=10)
    assert (first["maxCursor"], first["minCursor"]) == (times[0] * 1000, times[9] * 1000)
    second = page(fake, count=10, minTime=first["minCursor"])  # minTime is read in ms too
    assert ids(second["followingList"]) == ids(seeded[10:20])


def test_deviation_zero_cursors(fake):
    deviant(fake, "zero_cursors")
    first = page(fake, count=10)
    assert len(first["followingList"]) == 10 and first["maxCursor"] == first["minCursor"] == 0


def test_deviation_missing_cursors(fake):
    deviant(fake, "missing_cursors")
    first = page(fake, count=10)
    assert len(first["followingList"]) == 10 and "maxCursor" not in first and "minCursor" not in first


def test_deviation_constant_cursors(fake):
    seeded, times = deviant(fake, "constant_cursors")
    first = page(fake, count=10)
    second = page(fake, count=10, minTime=first["minCursor"])
    assert ids(second["followingList"]) == ids(seeded[10:20])
    assert (second["maxCursor"], second["minCursor"]) == (first["maxCursor"], first["minCursor"]) == (times[0], times[9])


def test_deviation_unordered_cursors(fake):
    seeded, times = deviant(fake, "unordered_cursors")
    first = page(fake, count=10)
    second = page(fake, count=10, minTime=first["minCursor"])
    assert ids(second["followingList"]) == ids(seeded[10:20])
    assert second["minCursor"] > first["minCursor"] and second["maxCursor"] > first["minCursor"]


@pytest.mark.parametrize("name, asked, got", [
    ("count_ignored_long", 1, 50), ("count_ignored_long", 100, 50),
    ("count_ignored_short", 30, 7), ("count_ignored_short", 3, 3),
    ("count_max_20", 100, 20), ("count_max_20", 15, 15),
])
def test_deviation_page_sizes(fake, name, asked, got):
    deviant(fake, name)
    answered = page(fake, count=asked)
    assert len(answered["followingList"]) == got and answered["hasMore"] is True


def test_deviation_has_more_always(fake):
    deviant(fake, "has_more_always", n=5)
    assert page(fake, count=10)["hasMore"] is True  # only 5 accounts
    assert page(fake, count=10, minTime=1)["followingList"] == [] and page(fake, count=10, minTime=1)["hasMore"]


def test_deviation_has_more_wrong(fake):
    deviant(fake, "has_more_wrong")
    first = page(fake, count=10)
    assert first["hasMore"] is False
    assert len(page(fake, count=10, minTime=first["minCursor"])["followingList"]) == 10


def test_deviation_empty_page_has_more_once_per_handle(fake):
    seeded, _ = deviant(fake, "empty_page_has_more")
    first = page(fake, count=10)
    assert len(first["followingList"]) == 10
    empty = page(fake, count=10, minTime=first["minCursor"])
    assert empty["followingList"] == [] and empty["hasMore"] is True
    again = page(fake, count=10, minTime=first["minCursor"])
    assert ids(again["followingList"]) == ids(seeded[10:20])


def test_deviation_duplicates_within_and_across_pages(fake):
    seeded, _ = deviant(fake, "duplicates")
    first = ids(page(fake, count=10)["followingList"])
    assert len(first) == 10 and first[0] == first[1] == ids(seeded)[0]  # within the page
    assert first[2:] == ids(seeded[1:9])
    second = page(fake, count=10, minTime=page(fake, count=10)["minCursor"])
    assert ids(second["followingList"])[0] == first[-1]  # across pages
    assert ids(second["followingList"])[1] == ids(second["followingList"])[2] == ids(seeded)[9]


def test_deviation_numeric_ids(fake):
    seeded, _ = deviant(fake, "numeric_ids")
    raw = call(fake, {"handle": DEV_HANDLE, "count": 3}).text
    assert f'"id": {seeded[0]["user"]["id"]},' in raw
    assert page(fake, count=3)["followingList"][0]["user"]["id"] == int(seeded[0]["user"]["id"])


def test_deviation_missing_optional(fake):
    deviant(fake, "missing_optional")
    entries = page(fake, count=4)["followingList"]
    assert all("stats" not in e for e in entries)
    assert "avatarThumb" not in entries[0]["user"] and entries[0]["user"]["signature"] is None
    assert "signature" not in entries[1]["user"] and entries[1]["user"]["avatarThumb"] is None
    assert entries[0]["user"]["uniqueId"] and entries[1]["user"]["id"]


def test_deviation_depth_cap_100(fake):
    deviant(fake, "depth_cap_100")
    first = page(fake, count=100)
    assert len(first["followingList"]) == 100 and first["hasMore"] is False and first["total"] == 250
    assert page(fake, count=100, minTime=first["minCursor"])["followingList"] == []


def test_deviation_unordered_swaps_adjacent_pairs(fake):
    seeded, times = deviant(fake, "unordered")
    answered = page(fake, count=4)
    s = ids(seeded)
    assert ids(answered["followingList"]) == [s[1], s[0], s[3], s[2]]
    assert (answered["maxCursor"], answered["minCursor"]) == (times[0], times[3])


def test_deviation_hidden_list(fake):
    deviant(fake, "hidden_list")
    answered = page(fake, count=30)
    assert answered["followingList"] == [] and answered["hasMore"] is False and answered["total"] == 250


def test_deviations_over_the_control_api(fake):
    control = fake.url + "/_fake/deviations"
    assert requests.get(control).json() == {"deviations": []}
    assert requests.post(control, json={"names": ["numeric_ids"]}).json() == {"deviations": ["numeric_ids"]}
    assert fake.deviations == ["numeric_ids"]
    refused = requests.post(control, json={"names": ["no_such_thing"]})
    assert refused.status_code == 400 and "no_such_thing" in refused.json()["error"]
    assert requests.post(control, json={"names": []}).json() == {"deviations": []}


def test_cli_deviation_flags():
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "fakeupstream", "--port", "0", "--demo",
         "--deviation", "zero_cursors", "--deviation", "numeric_ids"],
        cwd=root, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        line = process.stdout.readline()
        assert "deviations: numeric_ids, zero_cursors" in line
        url = re.search(r"http://[\d.]+:\d+", line).group(0)
        answered = requests.post(url + API_PATH, json={"handle": "charlidamelio", "count": 5},
                                 headers={"Authorization": "Bearer demo-key"}, timeout=5).json()
        assert answered["maxCursor"] == 0 and isinstance(answered["followingList"][0]["user"]["id"], int)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        process.kill()
        process.stdout.close()
    bad = subprocess.run([sys.executable, "-m", "fakeupstream", "--deviation", "nope"], cwd=root,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr
