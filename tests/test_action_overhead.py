"""The action's own cost (issue 14 item 2), checked without timing anything: the Python
calls one upstream page costs, and the request schema built once per route, not per request.
Timings are in bench/bench_overhead.py and docs/SCALING.md ("The action's overhead")."""
from __future__ import annotations

import io
import sys
import threading

import orjson
import pytest
from werkzeug.test import EnvironBuilder

from integration.errors import UpstreamFailure
from integration.upstream import DumplingClient, _decode
from schemas.following import FollowingRequestSchema
from tests.conftest import API_KEY

# One page of 30 accounts, after warm-up: 256 Python calls on libcurl (585 on urllib3 +
# http.client, 1311 on requests: its per-call URL parsing, settings merging and hooks). A
# return to a heavier stack or check fails here.
PAGE_CALL_BUDGET = 300


def _python_calls(fn) -> int:
    calls = [0]

    def count(_frame, event, _arg):
        if event == "call":
            calls[0] += 1

    sys.setprofile(count)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls[0]


def test_one_upstream_page_stays_within_its_python_call_budget(fake_upstream):
    fake_upstream.seed("budgeted", 30)
    client = DumplingClient(fake_upstream.url)
    try:
        for _ in range(3):  # pools, the watchdog thread, lazy imports
            client.fetch_page(API_KEY, "budgeted", "API", count=30)
        page = [None]
        calls = _python_calls(lambda: page.__setitem__(0, client.fetch_page(API_KEY, "budgeted", "API", count=30)))
    finally:
        client.close()
    assert len(page[0].accounts) == 30
    assert calls <= PAGE_CALL_BUDGET, calls


def test_the_upstream_sees_the_request_it_saw_through_requests(fake_upstream):
    fake_upstream.seed("headers", 3)
    client = DumplingClient(fake_upstream.url)
    try:
        client.fetch_page(API_KEY, "headers", "API", count=3, min_time=5)
    finally:
        client.close()
    seen = fake_upstream.requests[-1]
    assert seen.body == {"handle": "headers", "requestSource": "API", "count": 3, "minTime": 5}
    assert seen.key == API_KEY and seen.status == 200


def test_answers_orjson_refuses_are_read_as_the_json_module_reads_them():
    assert _decode(b'{"total": 18446744073709551616}') == {"total": 18446744073709551616}  # past 64 bits
    assert _decode('{"a": 1}'.encode("utf-16")) == {"a": 1}
    assert _decode(b'{"a": [1, 2]}') == {"a": [1, 2]}


def test_the_request_schema_is_built_once_per_route_not_per_request(client, fake_upstream, monkeypatch):
    fake_upstream.seed("schema_once", 3)
    built = []
    original = FollowingRequestSchema.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(FollowingRequestSchema, "__init__", counting)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    for _ in range(2):
        response = client.post("/v1/api/following", json={"handle": "schema_once", "count": 3}, headers=headers)
        assert response.status_code == 200, response.get_json()
        assert response.headers["X-Credits-Used"] == "1"
    bad = client.post("/v1/api/following", json={"handle": "schema_once", "count": 0}, headers=headers)
    assert bad.status_code == 400 and bad.get_json()["code"] == "invalid_request" and "count" in bad.get_json()["error"]  # validation still runs
    assert built == []


@pytest.mark.parametrize("process", ["web", "worker"])
def test_the_upstream_client_keeps_a_connection_alive_per_calling_thread(tmp_path, fake_upstream, process):
    """A handle per thread, reused: T threads making N calls each open T connections, never
    one per call (a pool smaller than the threads did that), in both processes' services."""
    from integration import worker
    from integration.config import Settings
    from integration.services import Services

    settings = Settings.from_env(database_url=f"sqlite:///{tmp_path / 'pool.db'}", dumpling_base_url=fake_upstream.url,
                                 worker_concurrency=8)
    svc = Services.build(settings) if process == "web" else worker.build_services(settings)
    fake_upstream.seed("alive", 3)
    threads, calls = 4, 5
    together = threading.Barrier(threads)  # every thread in flight at once, each round
    pages = []

    def run():
        for _ in range(calls):
            together.wait(timeout=10)
            pages.append(svc.client.fetch_page(API_KEY, "alive", "API", count=3))

    before = fake_upstream.accepted
    try:
        running = [threading.Thread(target=run) for _ in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join(timeout=30)
        assert len(pages) == threads * calls
        assert fake_upstream.accepted - before == threads
    finally:
        svc.client.close()
        svc.engine.dispose()


def test_an_answer_cut_off_drops_its_connection_and_the_next_call_reconnects(fake_upstream):
    fake_upstream.seed("cut", 30)
    client = DumplingClient(fake_upstream.url, max_bytes=100)
    before = fake_upstream.accepted
    try:
        for _ in range(3):
            with pytest.raises(UpstreamFailure) as caught:
                client.fetch_page(API_KEY, "cut", "API", count=30)
            assert caught.value.kind == "malformed"
        assert fake_upstream.accepted - before == 3  # a half-read connection is never reused
        client.max_bytes = 5 * 1024 * 1024
        for _ in range(2):
            assert len(client.fetch_page(API_KEY, "cut", "API", count=30).accounts) == 30
        assert fake_upstream.accepted - before == 4  # one more, then kept alive
    finally:
        client.close()


# One action call (a page of 30) through the WSGI application, after warm-up: ~585 Python calls
# on its direct path (integration/api/action_path.py), ~980 through Flask's dispatch. A plain
# call that falls back to Flask, or a heavier path, fails here.
ACTION_CALL_BUDGET = 700


def test_one_action_call_stays_within_its_python_call_budget(app, fake_upstream):
    fake_upstream.seed("budgeted", 30)
    body = orjson.dumps({"handle": "budgeted", "count": 30})
    environ = EnvironBuilder(path="/v1/api/following", method="POST", data=body, content_type="application/json",
                             headers={"Authorization": f"Bearer {API_KEY}"}).get_environ()
    statuses = []

    def call():
        answer = app.wsgi_app({**environ, "wsgi.input": io.BytesIO(body)}, lambda status, *_: statuses.append(status))
        assert orjson.loads(b"".join(answer))["count"] == 30

    for _ in range(3):  # pools, lazy imports, caches
        call()
    calls = _python_calls(call)
    assert statuses == ["200 OK"] * 4
    assert calls <= ACTION_CALL_BUDGET, calls
