"""Every input is bounded: bodies, nesting, times, integers. Each gets a JSON 4xx naming the
problem (or the field), never a 500, and a too-large body is refused before it is read."""
from __future__ import annotations

import json
import socket

import pytest
import requests

from tests.conftest import AUTH

TRIGGER = "/v1/api/triggers/new-following"
FOLLOWING = "/v1/api/following"


def _error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == code and body["error"]
    return body


def test_a_body_over_the_limit_is_413(client, fake_upstream):
    big = json.dumps({"handle": "alice", "pad": "x" * 70_000})
    body = _error(client.post(TRIGGER, data=big, headers={**AUTH, "Content-Type": "application/json"}),
                  413, "body_too_large")
    assert "64 KiB" in body["error"]
    assert fake_upstream.requests == []


def test_deeply_nested_json_is_400_not_a_crash(client, fake_upstream):
    deep = '{"handle": ' + "[" * 30_000 + "]" * 30_000 + "}"
    _error(client.post(TRIGGER, data=deep, headers={**AUTH, "Content-Type": "application/json"}), 400, "invalid_json")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "utf-8-sig"])
def test_a_body_in_another_unicode_encoding_is_read_as_json_reads_it(client, fake_upstream, encoding):
    """RFC 7159 allowed UTF-16/32 JSON and Python's json detects them: every route reads such a body
    as its UTF-8 twin (it answered 500 when a second parser refused what the first had accepted)."""
    fake_upstream.seed("alice", 3)
    headers = {**AUTH, "Content-Type": "application/json"}
    twin = client.post(FOLLOWING, json={"handle": "alice", "count": 3}, headers=AUTH)
    response = client.post(FOLLOWING, data=json.dumps({"handle": "alice", "count": 3}).encode(encoding), headers=headers)
    assert response.status_code == twin.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == twin.get_json() and len(response.get_json()["following"]) == 3
    response = client.post(TRIGGER, data=json.dumps({"handle": "alice", "limit": 2}).encode(encoding), headers=headers)
    assert response.status_code == 200 and response.get_json() == client.post(TRIGGER, json={"handle": "alice"},
                                                                               headers=AUTH).get_json()
    for route in (TRIGGER, FOLLOWING):  # and a bad field in it is named as in UTF-8
        body = _error(client.post(route, data=json.dumps({"handle": ""}).encode(encoding), headers=headers),
                      400, "invalid_request")
        assert "handle" in body["fields"]


def test_bytes_that_are_no_unicode_text_are_invalid_json(client, fake_upstream):
    body = _error(client.post(TRIGGER, data=b'{"handle": "\xff\xfe"}', headers={**AUTH, "Content-Type": "application/json"}),
                  400, "invalid_json")
    assert "JSON" in body["error"]
    assert fake_upstream.requests == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_without_the_json_content_type_says_so(client, content_type):
    headers = {**AUTH, **({"Content-Type": content_type} if content_type else {})}
    body = _error(client.post(TRIGGER, data='{"handle": "alice"}', headers=headers), 415, "unsupported_media_type")
    assert "Content-Type: application/json" in body["error"]


@pytest.mark.parametrize("route, field, value", [
    (TRIGGER, "since", "0001-01-01T00:00:00+01:00"),      # year 0 in UTC
    (TRIGGER, "since", "9999-12-31T23:59:59-01:00"),      # year 10000 in UTC
    (TRIGGER, "since", "10000-01-01T00:00:00Z"),
    (TRIGGER, "afterSequence", 2**31),                    # past the column (INTEGER on PostgreSQL)
    (TRIGGER, "afterSequence", 2**63),
    (TRIGGER, "afterSequence", 10**30),
    (TRIGGER, "limit", 10**30),
    (TRIGGER, "limit", 0),
    (FOLLOWING, "count", 10**30),
    (FOLLOWING, "limit", 10**18),
    (FOLLOWING, "minTime", 2**63),
    (FOLLOWING, "minTime", -1),
])
def test_out_of_range_values_are_400_naming_the_field(client, fake_upstream, route, field, value):
    body = _error(client.post(route, json={"handle": "alice", field: value}, headers=AUTH), 400, "invalid_request")
    assert field in body["fields"]
    assert fake_upstream.requests == []


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00-01:00"])
def test_calendar_edges_that_have_a_utc_form_are_accepted(client, fake_upstream, since):
    fake_upstream.seed("alice", 3)
    response = client.post(TRIGGER, json={"handle": "alice", "since": since, "afterSequence": 2**31 - 1}, headers=AUTH)
    assert response.status_code == 200 and response.get_json() == []


def _raw_exchange(url: str, head: bytes, body_chunks=(), timeout: float = 10.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed: it did not read the rest
                break
        answer = b""
        while b"}" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def test_a_huge_declared_body_is_refused_before_it_is_read(live_service):
    """200 MB announced, not one byte sent: the answer comes at once (nothing waits for the body)."""
    head = (b"POST /v1/api/triggers/new-following HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            b"Content-Type: application/json\r\nContent-Length: 209715200\r\n\r\n")
    answer = _raw_exchange(live_service.url, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"code":"body_too_large"' in answer.replace(b" ", b"")


def test_a_chunked_body_over_the_limit_is_413(live_service):
    def chunks():
        yield b'{"handle": "alice", "pad": "'
        for _ in range(40):
            yield b"x" * 8192
        yield b'"}'

    response = requests.post(live_service.url + TRIGGER, data=chunks(), timeout=30,
                             headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["code"] == "body_too_large", response.text
