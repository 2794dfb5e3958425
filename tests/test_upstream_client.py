"""The one upstream client: validation of 200 bodies, retries, bounds."""
from __future__ import annotations

import copy
import time

import pytest

from fakeupstream import make_account
from integration.errors import UpstreamFailure
from integration.upstream import DumplingClient, Meter, parse_retry_after
from marshmallow import ValidationError
from integration.upstream_shape import UpstreamPageSchema
from tests.conftest import API_KEY

GOOD = {"followingList": [make_account(i) for i in range(3)], "maxCursor": 30, "minCursor": 10, "hasMore": True,
        "total": 100}


@pytest.mark.parametrize("mutate", [
    lambda b: b.pop("followingList"),
    lambda b: b.update(followingList={"a": 1}),
    lambda b: b.update(maxCursor="30"),
    lambda b: b.update(hasMore="yes"),
    lambda b: b["followingList"].append("x"),
    lambda b: b["followingList"][0].pop("user"),
    lambda b: b["followingList"][0]["user"].pop("id"),
    lambda b: b["followingList"][0]["user"].update(uniqueId=""),
    lambda b: b["followingList"][0]["user"].update(id=True),
    lambda b: b["followingList"][0]["user"].update(verified="false"),
    lambda b: b["followingList"][0].update(stats=[1]),
    lambda b: b["followingList"][1]["stats"].update(followerCount=1.5),
    lambda b: b["followingList"][1]["stats"].update(heartCount=True),
])
def test_bodies_off_the_documented_shape_are_refused(mutate):
    body = copy.deepcopy(GOOD)
    mutate(body)
    with pytest.raises(ValidationError):
        UpstreamPageSchema().load(body)


def test_documented_body_and_lenient_extras_are_accepted():
    body = copy.deepcopy(GOOD)
    body["newField"] = 1
    body["followingList"][0]["user"]["nickname"] = None
    body["followingList"][1]["stats"] = None
    body["followingList"][2]["user"]["id"] = 6900000000000000002  # a number id is stringified later
    assert len(UpstreamPageSchema().load(body)["followingList"]) == 3


def test_an_entry_flattens_to_the_documented_account():
    """Nulls and absent fields take the documented defaults; a numeric id becomes a string."""
    from integration.accounts import flatten
    from schemas.account import AccountSchema

    entry = {"user": {"id": 6900000000000000002, "uniqueId": "amy", "nickname": None, "verified": None},
             "stats": {"followerCount": None, "heartCount": 7}}
    flat = flatten(entry)
    assert set(flat) == set(AccountSchema().fields) and AccountSchema().validate(flat) == {}
    assert flat == {"id": "6900000000000000002", "uniqueId": "amy", "nickname": "", "profileUrl": "https://www.tiktok.com/@amy",
                    "avatarThumb": "", "signature": "", "verified": False, "privateAccount": False, "secUid": "",
                    "followerCount": 0, "followingCount": 0, "heartCount": 7, "videoCount": 0, "diggCount": 0}
    assert flatten({**entry, "stats": None})["heartCount"] == 0
    assert flatten(make_account(1))["verified"] in (True, False)


def test_client_returns_flat_accounts_and_meters_credits(fake_upstream):
    fake_upstream.seed("alice", 5)
    client, meter = DumplingClient(fake_upstream.url), Meter()
    page = client.fetch_page(API_KEY, "alice", "API", count=2, meter=meter)
    assert len(page.accounts) == 2 and page.has_more and page.max_cursor > page.min_cursor
    assert page.accounts[0]["profileUrl"].startswith("https://www.tiktok.com/@")
    assert meter.credits == 1 and meter.calls == 1 and meter.headers()["X-Credits-Used"] == "1"


def test_retry_after_is_honoured_within_the_total_bound(fake_upstream):
    fake_upstream.seed("alice", 2)
    fake_upstream.fail_next(503, times=1, headers={"Retry-After": "1"})
    sleeps = []
    client = DumplingClient(fake_upstream.url, sleep=lambda s: sleeps.append(s))
    client.fetch_page(API_KEY, "alice", "API")
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] <= 1.25  # Retry-After plus jitter


def test_a_retry_after_beyond_the_bound_is_not_waited_for(fake_upstream):
    fake_upstream.seed("alice", 2)
    fake_upstream.fail_next(503, times=1, headers={"Retry-After": "120"})
    client = DumplingClient(fake_upstream.url, total_seconds=10)
    started = time.monotonic()
    with pytest.raises(UpstreamFailure) as info:
        client.fetch_page(API_KEY, "alice", "API")
    assert info.value.kind == "rate_limited" and info.value.retry_after == 120
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500])
def test_never_retried(fake_upstream, status):
    fake_upstream.seed("alice", 2)
    fake_upstream.fail_next(status, times=3)
    with pytest.raises(UpstreamFailure):
        DumplingClient(fake_upstream.url, sleep=lambda s: None).fetch_page(API_KEY, "alice", "API")
    assert len(fake_upstream.requests) == 1


def test_backoff_has_jitter_and_grows(fake_upstream):
    fake_upstream.seed("alice", 2)
    fake_upstream.fail_next(502, times=2)
    sleeps = []
    DumplingClient(fake_upstream.url, sleep=sleeps.append).fetch_page(API_KEY, "alice", "API")
    assert len(sleeps) == 2 and 0.25 <= sleeps[0] <= 0.3125 and 0.5 <= sleeps[1] <= 0.625


def test_parse_retry_after():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_a_request_goes_out_in_one_write_head_and_body():
    """libcurl sends a small body with its head: one write, one wake of the upstream. The
    handle is given one end of a message socket pair (a write is a message), already connected."""
    import socket
    import threading

    import pycurl

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    page = b'{"followingList": [], "maxCursor": 0, "minCursor": 0, "hasMore": false}'
    writes = []

    def serve():
        for _ in range(2):
            writes.append(theirs.recv(65536))
            theirs.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page))

    threading.Thread(target=serve, daemon=True).start()
    client = DumplingClient("http://127.0.0.1:9")
    curl = client._lane().curl
    curl.setopt(pycurl.OPENSOCKETFUNCTION, lambda purpose, address: ours)
    curl.setopt(pycurl.SOCKOPTFUNCTION, lambda fd, purpose: pycurl.SOCKOPT_ALREADY_CONNECTED)
    try:
        for _ in range(2):  # a new connection, then the kept-alive one (the pair has no other)
            assert client.fetch_page(API_KEY, "alice", "API", count=2).accounts == ()
    finally:
        client.close()
        ours.close()
        theirs.close()
    assert len(writes) == 2
    for write in writes:
        assert write.startswith(b"POST /api/v1/get-tiktok-user-following HTTP/1.1\r\n")
        assert write.endswith(b'\r\n\r\n{"handle":"alice","requestSource":"API","count":2}')
