"""The action's direct path (integration/api/action_path.py): plain calls skip Flask's dispatch,
everything else is Flask's, and either way a caller cannot tell the difference: the same
status, body, headers, ledger and log line as the view's (ACTION_FAST_PATH=0). Both databases."""
from __future__ import annotations

import io
import json
import logging
import socket
from urllib.parse import urlsplit

import pytest
import requests
from flask import request_started
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Response

from integration import following, ledger
from integration.config import Settings
from integration.models import utcnow
from tests.conftest import API_KEY, AUTH, make_test_app, unique_handle

ROUTE = "/v1/api/following"
BUDGET = "X-Daily-Credit-Budget"
# Headers that differ by nature between two answers: the request's own id, the server's date,
# the fake's count of the key's calls.
_PER_ANSWER = {"X-Request-Id", "Date", "X-RateLimit-Remaining"}


@pytest.fixture
def apps(database_url, fake_upstream):
    """(direct path on, direct path off) on one database and one fake upstream."""
    fake_upstream.seed("alice", 40)
    made = [make_test_app(database_url, fake_upstream.url),
            make_test_app(database_url, fake_upstream.url, action_fast_path=False)]
    yield made
    for app in made:
        svc = app.extensions["tiktok_following"]
        svc.client.close()
        svc.engine.dispose()


@pytest.fixture
def dispatched(apps):
    """The paths of the requests Flask dispatched (its request_started signal)."""
    seen = []

    def on_start(sender, **_):
        from flask import request
        seen.append(request.path)

    request_started.connect(on_start)
    yield seen
    request_started.disconnect(on_start)


def credits_today(app) -> int:
    svc = app.extensions["tiktok_following"]
    return ledger.spent_on(svc.sessions, svc.owner(API_KEY), utcnow().date())


def answer_of(response) -> tuple:
    headers = sorted((k, v) for k, v in response.headers.items() if k not in _PER_ANSWER)
    return response.status_code, response.get_json(), headers


def request_lines(caplog) -> list[dict]:
    lines = [dict(r.fields) for r in caplog.records if r.getMessage() == "request"]
    for line in lines:
        line.pop("ms"), line.pop("request_id")
    return lines


def test_a_plain_call_skips_flasks_dispatch_and_the_rest_goes_through_it(apps, dispatched):
    client = apps[0].test_client()
    assert client.post(ROUTE, json={"handle": "alice", "count": 5}, headers=AUTH).status_code == 200
    assert client.post("/v1/zapier/following", data='{"handle": "alice"}', headers=AUTH,
                       content_type="application/json; charset=utf-8").status_code == 200
    assert dispatched == []
    refused = [
        client.post(ROUTE, json={"handle": "alice", "count": 0}, headers=AUTH),         # the schema refuses it
        client.post(ROUTE, data='{"handle": "alice"}', headers=AUTH, content_type="text/plain"),
        client.post(ROUTE, data='["alice"]', headers=AUTH, content_type="application/json"),
        client.post(ROUTE, data="{", headers=AUTH, content_type="application/json"),
    ]
    assert [r.status_code for r in refused] == [400, 415, 400, 400]
    assert [r.get_json()["code"] for r in refused] == ["invalid_request", "unsupported_media_type", "invalid_json",
                                                      "invalid_json"]
    assert refused[0].get_json()["fields"] == {"count": ["Must be greater than or equal to 1 and less than or equal to 100."]}
    utf16 = client.post(ROUTE, data='{"handle": "alice", "count": 2}'.encode("utf-16"), headers=AUTH,
                        content_type="application/json")  # orjson refuses it, json reads it: Flask's call
    assert utf16.status_code == 200 and utf16.get_json()["count"] == 2
    assert dispatched == [ROUTE] * 5
    assert client.get(ROUTE, headers=AUTH).status_code == 405  # only POST is the action's
    assert client.post(ROUTE + "/", json={"handle": "alice"}, headers=AUTH).status_code in (308, 404)


SCENARIOS = {
    "a page": dict(body={"handle": "alice", "count": 5}),
    "pages up to a limit, filtered": dict(body={"handle": "alice", "count": 10, "limit": 25, "minFollowers": 0}),
    "from Zapier, with a budget": dict(path="/v1/zapier/following", body={"handle": "alice"},
                                       headers={**AUTH, BUDGET: "50"}),
    "the caller's request id": dict(body={"handle": "alice"}, headers={**AUTH, "X-Request-Id": "abc123"}),
    "no key": dict(body={"handle": "alice"}, headers={}),
    "a bad budget header": dict(body={"handle": "alice"}, headers={**AUTH, BUDGET: "ten"}),
    "the budget spent": dict(body={"handle": "alice"}, headers={**AUTH, BUDGET: "0"}),
    "the key refused upstream": dict(body={"handle": "alice"}, fault=(401, None)),
    "rate limited upstream": dict(body={"handle": "alice"}, fault=(429, {"Retry-After": "7", "X-RateLimit-Remaining": "0"})),
    "an unknown handle": dict(body={"handle": "nobody_here"}),
    "a bad body": dict(body={"handle": "alice", "limit": "many"}),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_either_path_gives_the_same_answer_ledger_and_log_line(apps, fake_upstream, caplog, name):
    scenario = SCENARIOS[name]
    answers, lines, spent = [], [], []
    for app in apps:
        before = credits_today(app)
        client = app.test_client()
        if scenario.get("fault"):
            status, headers = scenario["fault"]
            fake_upstream.fail_next(status, headers=headers)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="app"):
            response = client.post(scenario.get("path", ROUTE), json=scenario["body"],
                                   headers=scenario.get("headers", AUTH))
        answers.append(answer_of(response))
        lines.append(request_lines(caplog))
        spent.append(credits_today(app) - before)
    assert answers[0] == answers[1]
    assert lines[0] == lines[1] and len(lines[0]) == 1
    assert spent[0] == spent[1] == lines[0][0]["credits"]  # the ledger counted what each answer says
    if name == "the caller's request id":
        assert response.headers["X-Request-Id"] == "abc123"


def test_a_crash_is_answered_and_logged_as_by_the_view(apps, monkeypatch, caplog):
    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(following, "list_following", broken)
    answers = []
    for app in apps:
        with caplog.at_level(logging.INFO, logger="app"):
            caplog.clear()
            answers.append(answer_of(app.test_client().post(ROUTE, json={"handle": "alice"}, headers=AUTH)))
            crashes = [r for r in caplog.records if r.getMessage() == "unhandled error"]
            assert len(crashes) == 1 and "a bug" in json.dumps(str(crashes[0].exc_info[1]))
    assert answers[0] == answers[1]
    assert answers[0][0] == 500 and answers[0][1]["code"] == "internal_error"


def test_the_direct_path_can_be_turned_off(monkeypatch):
    assert Settings.from_env().action_fast_path is True
    monkeypatch.setenv("ACTION_FAST_PATH", "0")
    assert Settings.from_env().action_fast_path is False


def test_through_gunicorn_plain_chunked_and_refused_bodies_answer_as_before(live_service, fake_upstream):
    """The service as it runs: a plain call (the direct path), the same body chunked (no declared
    length: Flask's), a body declared over the limit (refused unread) and a wrong content type."""
    handle = unique_handle("ap")
    fake_upstream.seed(handle, 5)
    url = live_service.url + ROUTE
    plain = requests.post(url, json={"handle": handle}, headers=AUTH, timeout=30)
    assert plain.status_code == 200 and plain.headers["X-Credits-Used"] == "1", plain.text
    chunked = requests.post(url, data=iter([b'{"handle": ', f'"{handle}"}}'.encode()]), timeout=30,
                            headers={**AUTH, "Content-Type": "application/json"})
    assert chunked.status_code == 200 and chunked.headers["X-Credits-Used"] == "1", chunked.text
    assert chunked.json()["following"] == plain.json()["following"] and plain.json()["count"] == 5
    address = urlsplit(live_service.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(f"POST {ROUTE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 209715200\r\n\r\n".encode())
        head = sock.recv(65536)  # answered at once: nothing waited for the 200 MB announced
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    text = requests.post(url, data=f'{{"handle": "{handle}"}}', headers={**AUTH, "Content-Type": "text/plain"}, timeout=30)
    assert text.status_code == 415 and text.json()["code"] == "unsupported_media_type"
    assert len(fake_upstream.requests) == 2  # only the two plain calls asked the upstream


def test_what_the_direct_path_cannot_read_is_flasks_to_answer(apps, dispatched, monkeypatch):
    """A declared length too long to be a number, or a body the direct path's schema fails on
    (a bug, not a refusal), goes to Flask, which answers as the view does."""
    environ = EnvironBuilder(path=ROUTE, method="POST", data=b"{}", content_type="application/json",
                             headers=AUTH).get_environ()
    environ["CONTENT_LENGTH"] = "9" * 5000  # past what int() reads (4,300 digits)
    absurd = [Response.from_app(app.wsgi_app, {**environ, "wsgi.input": io.BytesIO(b"{}")}) for app in apps]
    assert answer_of(absurd[0]) == answer_of(absurd[1]) and absurd[0].status_code == 400

    def broken(*_args, **_kwargs):
        raise RuntimeError("a schema bug")

    monkeypatch.setattr(apps[0].wsgi_app.schema, "load", broken)
    del dispatched[:]
    answered = apps[0].test_client().post(ROUTE, json={"handle": "alice", "count": 3}, headers=AUTH)
    assert answered.status_code == 200 and answered.get_json()["count"] == 3  # the view's own schema read it
    assert dispatched == [ROUTE]
