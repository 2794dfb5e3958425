"""CONTRACT.md's error table, every row, through the service against the fake upstream."""
from __future__ import annotations

import socket
import time

import pytest

from tests.conftest import AUTH, make_test_app

ROUTE = "/v1/api/following"


@pytest.fixture
def seeded(fake_upstream):
    fake_upstream.seed("alice", 5)
    return fake_upstream


def post(client, body=None, headers=AUTH, **kw):
    return client.post(ROUTE, json=body if body is not None else {"handle": "alice"}, headers=headers, **kw)


def assert_error(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert body["code"] == code
    assert isinstance(body["error"], str) and len(body["error"]) > 10
    return body


@pytest.mark.parametrize("upstream_status, status, code", [
    (400, 400, "upstream_rejected"),
    (401, 401, "invalid_api_key"),
    (403, 402, "insufficient_credits"),
    (404, 404, "handle_not_found"),
    (500, 502, "upstream_error"),
])
def test_upstream_statuses_map_to_contract(client, seeded, upstream_status, status, code):
    seeded.fail_next(upstream_status)
    assert_error(post(client), status, code)
    assert len(seeded.requests) == 1  # none of these is retried
    assert seeded.credits_spent() == 0


@pytest.mark.parametrize("upstream_status", [502, 503])
def test_transient_upstream_errors_are_retried(client, seeded, upstream_status):
    seeded.fail_next(upstream_status, times=1)
    response = post(client)
    assert response.status_code == 200
    assert len(seeded.requests) == 2
    assert response.headers["X-Credits-Used"] == "1"


def test_rate_limited_upstream_is_429_with_retry_after(client, seeded):
    seeded.fail_next(503, times=10, headers={"Retry-After": "2"})
    started = time.monotonic()
    body = assert_error(post(client), 429, "rate_limited")
    assert "try again" in body["error"].lower()
    response = post(client)  # faults remain: same answer
    assert int(response.headers["Retry-After"]) >= 1
    assert time.monotonic() - started < 15


def test_persistent_502_is_502(client, seeded):
    seeded.fail_next(502, times=10)
    assert_error(post(client), 502, "upstream_error")
    assert len(seeded.requests) == 3  # first try + 2 retries


@pytest.mark.parametrize("kind", ["shape", "not_json", "html", "empty"])
def test_malformed_upstream_body_is_502(client, seeded, kind):
    seeded.malformed_next(kind, times=5)
    assert_error(post(client), 502, "upstream_malformed")


def test_upstream_that_never_answers_is_504(database_url, fake_upstream):
    fake_upstream.seed("alice", 3)
    fake_upstream.hang_next(5, times=3)
    app = make_test_app(database_url, fake_upstream.url, upstream_read_timeout=0.5, upstream_total_seconds=3)
    started = time.monotonic()
    assert_error(app.test_client().post(ROUTE, json={"handle": "alice"}, headers=AUTH), 504, "upstream_timeout")
    assert time.monotonic() - started < 3
    assert len(fake_upstream.requests) <= 1  # a read timeout is never retried: it may have been charged


def test_refused_connection_is_502(database_url, fake_upstream):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens here once closed
    app = make_test_app(database_url, f"http://127.0.0.1:{port}")
    assert_error(app.test_client().post(ROUTE, json={"handle": "alice"}, headers=AUTH), 502, "upstream_unreachable")


def test_missing_key_is_401_before_any_upstream_call(client, seeded):
    assert_error(post(client, headers={}), 401, "missing_api_key")
    assert_error(post(client, headers={"Authorization": "Basic abc"}), 401, "missing_api_key")
    assert seeded.requests == []


def test_body_not_json_is_400(client, seeded):
    assert_error(client.post(ROUTE, data="{not json", headers={**AUTH, "Content-Type": "application/json"}), 400, "invalid_json")
    assert_error(client.post(ROUTE, json=[1, 2], headers=AUTH), 400, "invalid_json")
    assert seeded.requests == []


@pytest.mark.parametrize("body, field", [
    ({}, "handle"),
    ({"handle": ""}, "handle"),
    ({"handle": "a b"}, "handle"),
    ({"handle": "https://example.com/@alice"}, "handle"),
    ({"handle": "alice", "count": 0}, "count"),
    ({"handle": "alice", "count": "ten"}, "count"),
    ({"handle": "alice", "minTime": -1}, "minTime"),
    ({"handle": "alice", "limit": 100000}, "limit"),
    ({"handle": "alice", "requestSource": "ZAPIER"}, "requestSource"),
])
def test_invalid_bodies_are_400_with_field_messages(client, seeded, body, field):
    data = assert_error(post(client, body), 400, "invalid_request")
    assert field in data["fields"]
    assert seeded.requests == []  # refused before any upstream call


def test_unknown_platform_and_route_are_json_404(client):
    assert_error(client.post("/v1/ifttt/following", json={"handle": "alice"}, headers=AUTH), 404, "not_found")
    assert_error(client.get("/nope"), 404, "not_found")


def test_wrong_method_is_json_405(client):
    assert_error(client.get(ROUTE, headers=AUTH), 405, "method_not_allowed")


def test_rate_limit_headers_are_passed_back(client, seeded):
    response = post(client)
    assert response.headers["X-RateLimit-Limit"] == "1000"
    assert int(response.headers["X-RateLimit-Remaining"]) < 1000
    seeded.fail_next(404)
    response = post(client)
    assert response.status_code == 404 and "X-RateLimit-Remaining" in response.headers
    assert response.headers["X-Credits-Used"] == "0"


def test_database_failure_is_json_503(client, seeded, app):
    """A database that cannot be written (full disk, gone) answers a JSON 503, never a stack trace."""
    from sqlalchemy import create_engine

    svc = app.extensions["tiktok_following"]
    svc.sessions.configure(bind=create_engine("sqlite:////proc/forbidden.db"))
    response = client.post("/v1/api/triggers/new-following", json={"handle": "alice"}, headers=AUTH)
    assert_error(response, 503, "storage_unavailable")
    assert response.headers["Retry-After"] == "30"
