"""The worker, driven in-process (Worker.run_once / refresh_due / deliver_due) on both
databases, against the fake upstream and a real webhook receiver on 127.0.0.1.

A movable clock stands in for waiting: the worker's "now" is real time + an offset."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from integration import worker as worker_module
from integration.models import Delivery, Watch, utcnow
from integration.security import KeyVault
from integration.worker import Options, Worker
from tests.conftest import API_KEY, AUTH, unique_handle

INTERVAL = 300  # the default POLL_INTERVAL_SECONDS of the test app


# ---------------------------------------------------------------- a webhook receiver


class Receiver:
    """Records every POST; answers the scripted (status, headers, delay) in order, then 200."""

    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []  # (lower-cased headers, body), when answered
        self.started = 0  # requests that arrived (answered or not)
        self.script: deque = deque()
        self.delay = 0.0  # seconds before answering any request not scripted with its own delay
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.arrived:
                    receiver.started += 1
                    receiver.arrived.notify_all()
                    status, headers, delay = receiver.script.popleft() if receiver.script else (200, {}, receiver.delay)
                time.sleep(delay)
                with receiver.arrived:
                    # Recorded when answered: a request whose sender died before we answered still counts.
                    receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    receiver.arrived.notify_all()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def answer(self, status: int, headers: dict | None = None, times: int = 1, delay: float = 0.0) -> None:
        with self.arrived:
            self.script.extend([(status, headers or {}, delay)] * times)

    def wait_for(self, n: int, timeout: float = 30.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.received) >= n, timeout)

    def wait_started(self, n: int, timeout: float = 30.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: self.started >= n, timeout)

    def ids(self) -> list[str]:
        return [headers["webhook-id"] for headers, _ in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verified(secret: str, headers: dict, body: bytes) -> dict:
    """The event, after checking the Standard Webhooks signature (raises if it is wrong)."""
    return Webhook(secret).verify(body, headers)


# ---------------------------------------------------------------- fixtures


class Clock:
    def __init__(self):
        self.offset = dt.timedelta()

    def __call__(self) -> dt.datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)


@pytest.fixture
def svc(app):
    return app.extensions["tiktok_following"]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def worker(svc, clock):
    w = Worker(svc, Options(idle_seconds=0.05), clock=clock)
    yield w
    w.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def subscribe(client, fake, receiver, platform: str = "zapier", seeded: int = 3) -> tuple[str, dict]:
    handle = unique_handle()
    fake.seed(handle, seeded)
    resp = client.post(f"/v1/{platform}/hooks", json={"handle": handle, "targetUrl": receiver.url}, headers=AUTH)
    assert resp.status_code == 201, resp.get_json()
    return handle, resp.get_json()


def hook(client, sub: dict):
    return client.get(f"/v1/zapier/hooks/{sub['id']}", headers=AUTH)


def upstream_calls(fake) -> int:
    return len(fake.requests)


# ---------------------------------------------------------------- refresh + delivery


def test_new_follows_arrive_once_signed_and_shaped_like_trigger_items(client, fake_upstream, receiver, worker, clock):
    handle, sub = subscribe(client, fake_upstream, receiver)
    spent = fake_upstream.credits_spent()
    followed = [fake_upstream.follow(handle) for _ in range(3)]

    assert worker.run_once() == 0  # not due before the interval
    assert fake_upstream.credits_spent() == spent and receiver.received == []

    clock.advance(INTERVAL + 1)
    worker.run_once()
    assert fake_upstream.credits_spent() == spent + 1
    assert len(receiver.received) == 3
    events = [verified(sub["secret"], headers, body) for headers, body in receiver.received]
    assert {e["id"] for e in events} == {str(a["user"]["id"]) for a in followed}
    assert len(set(receiver.ids())) == 3

    # Nothing more within the interval, and nothing new after it.
    worker.run_once()
    clock.advance(INTERVAL + 1)
    worker.run_once()
    assert len(receiver.received) == 3
    assert fake_upstream.credits_spent() == spent + 2

    items = client.post("/v1/zapier/triggers/new-following", json={"handle": handle}, headers=AUTH).get_json()
    by_id = {item["id"]: item for item in items}
    for event in events:
        assert event == by_id[event["id"]]
    assert hook(client, sub).get_json()["deliveredCount"] == 3


def test_request_source_follows_the_subscribing_platform(client, fake_upstream, receiver, worker, clock):
    subscribe(client, fake_upstream, receiver, platform="make")
    clock.advance(INTERVAL + 1)
    worker.run_once()
    assert fake_upstream.requests[-1].body["requestSource"] == "MAKE_DOT_COM"


def test_never_refreshes_faster_than_the_interval(client, fake_upstream, receiver, worker, clock):
    subscribe(client, fake_upstream, receiver)
    spent = fake_upstream.credits_spent()
    for _ in range(20):  # 20 minutes in steps of one minute
        clock.advance(60)
        worker.run_once()
        worker.run_once()
    assert fake_upstream.credits_spent() - spent == 4  # at 5, 10, 15 and 20 minutes


# ---------------------------------------------------------------- receiver answers


def test_a_failed_attempt_is_retried_with_the_same_webhook_id(client, fake_upstream, receiver, worker, clock, svc):
    handle, sub = subscribe(client, fake_upstream, receiver)
    fake_upstream.follow(handle)
    receiver.answer(500)
    clock.advance(INTERVAL + 1)
    worker.run_once()
    assert len(receiver.received) == 1
    pending = client.get(f"/v1/zapier/hooks/{sub['id']}/deliveries?status=pending", headers=AUTH).get_json()
    assert pending[0]["attempts"] == 1 and pending[0]["lastStatus"] == 500

    worker.deliver_due()  # the retry is not due yet (5 s)
    assert len(receiver.received) == 1
    clock.advance(6)
    worker.deliver_due()
    assert len(receiver.received) == 2
    first, second = receiver.received
    assert first[0]["webhook-id"] == second[0]["webhook-id"] == pending[0]["id"]
    assert verified(sub["secret"], *second) == verified(sub["secret"], *first)
    done = client.get(f"/v1/zapier/hooks/{sub['id']}/deliveries?status=delivered", headers=AUTH).get_json()
    assert done[0]["attempts"] == 2


def test_retry_after_is_honoured(client, fake_upstream, receiver, worker, clock):
    handle, _ = subscribe(client, fake_upstream, receiver)
    fake_upstream.follow(handle)
    receiver.answer(429, {"Retry-After": "120"})
    clock.advance(INTERVAL + 1)
    worker.run_once()
    clock.advance(60)  # the schedule alone would retry after 5 s
    worker.deliver_due()
    assert len(receiver.received) == 1
    clock.advance(80)  # 140 s: past 120 s + 10 % jitter
    worker.deliver_due()
    assert len(receiver.received) == 2


def test_410_gone_deletes_the_subscription(client, fake_upstream, receiver, worker, clock, svc):
    handle, sub = subscribe(client, fake_upstream, receiver)
    fake_upstream.follow(handle)
    fake_upstream.follow(handle)
    receiver.answer(410, times=2)
    clock.advance(INTERVAL + 1)
    worker.run_once()
    assert hook(client, sub).status_code == 404
    with svc.sessions() as session:
        assert session.scalars(select(Delivery)).all() == []  # its other delivery went with it
        watch = session.scalar(select(Watch).where(Watch.handle == handle))
        assert watch.api_key_enc is None and watch.next_poll_at is None
    calls = upstream_calls(fake_upstream)
    clock.advance(INTERVAL + 1)
    worker.run_once()
    assert upstream_calls(fake_upstream) == calls  # nobody listens: no more polling


def test_after_the_last_retry_the_delivery_is_failed_and_listed(client, fake_upstream, receiver, worker, clock):
    handle, sub = subscribe(client, fake_upstream, receiver)
    fake_upstream.follow(handle)
    receiver.answer(500, times=100)
    clock.advance(INTERVAL + 1)
    worker.refresh_due()
    for _ in range(12):
        worker.deliver_due()
        clock.advance(12 * 3600)  # longer than any step of the schedule
    assert len(receiver.received) == 8  # 1 + 7 retries
    assert len(set(receiver.ids())) == 1
    failed = client.get(f"/v1/zapier/hooks/{sub['id']}/deliveries?status=failed", headers=AUTH).get_json()
    assert len(failed) == 1
    assert failed[0]["attempts"] == 8 and failed[0]["lastStatus"] == 500 and failed[0]["nextAttemptAt"] is None
    assert hook(client, sub).get_json()["failedCount"] == 1


def test_an_unreachable_receiver_is_retried(client, fake_upstream, receiver, worker, clock, svc):
    handle, sub = subscribe(client, fake_upstream, receiver)
    fake_upstream.follow(handle)
    receiver.close()  # connection refused
    clock.advance(INTERVAL + 1)
    worker.run_once()
    pending = client.get(f"/v1/zapier/hooks/{sub['id']}/deliveries", headers=AUTH).get_json()
    assert pending[0]["status"] == "pending" and pending[0]["lastError"] == "connection failed"
    with svc.sessions() as session:
        assert session.scalar(select(Delivery.claimed_until)) is None


# ---------------------------------------------------------------- upstream trouble


def test_401_pauses_the_watch_until_the_user_reconnects(client, fake_upstream, receiver, worker, clock):
    handle, sub = subscribe(client, fake_upstream, receiver)
    fake_upstream.fail_next(401)
    clock.advance(INTERVAL + 1)
    worker.run_once()
    shown = hook(client, sub).get_json()
    assert shown["status"] == "paused"
    assert "DumplingAI refused the stored API key" in shown["statusReason"]
    calls = upstream_calls(fake_upstream)
    clock.advance(10 * INTERVAL)
    worker.run_once()
    assert upstream_calls(fake_upstream) == calls  # paused: no more calls

    # Subscribing again (a working key) resumes the watch.
    resp = client.post("/v1/zapier/hooks", json={"handle": handle, "targetUrl": receiver.url}, headers=AUTH)
    assert resp.get_json()["status"] == "active"
    assert hook(client, sub).get_json()["status"] == "active"


def test_no_credits_backs_off_an_hour_and_resumes(client, fake_upstream, receiver, worker, clock):
    handle, sub = subscribe(client, fake_upstream, receiver)
    fake_upstream.fail_next(403)
    clock.advance(INTERVAL + 1)
    worker.run_once()
    shown = hook(client, sub).get_json()
    assert shown["status"] == "paused" and "no credits" in shown["statusReason"]
    calls = upstream_calls(fake_upstream)
    clock.advance(INTERVAL + 1)
    worker.run_once()
    assert upstream_calls(fake_upstream) == calls
    fake_upstream.follow(handle)
    clock.advance(3600)
    worker.run_once()
    assert upstream_calls(fake_upstream) == calls + 1
    shown = hook(client, sub).get_json()
    assert shown["status"] == "active" and shown["statusReason"] is None
    assert len(receiver.received) == 1  # the follow made while out of credits still arrives


def test_rate_limited_waits_for_retry_after(client, fake_upstream, receiver, worker, clock):
    subscribe(client, fake_upstream, receiver)
    fake_upstream.fail_next(429, headers={"Retry-After": "900"})
    clock.advance(INTERVAL + 1)
    worker.run_once()
    calls = upstream_calls(fake_upstream)
    clock.advance(INTERVAL + 1)
    worker.run_once()
    assert upstream_calls(fake_upstream) == calls
    clock.advance(600)  # 901 s after the 429
    worker.run_once()
    assert upstream_calls(fake_upstream) == calls + 1


# 502 is retried twice inside the upstream client: three answers make the refresh fail.
@pytest.mark.parametrize("status,times", [(500, 1), (502, 3)])
def test_server_errors_retry_at_the_next_interval(client, fake_upstream, receiver, worker, clock, status, times):
    handle, sub = subscribe(client, fake_upstream, receiver)
    fake_upstream.fail_next(status, times=times)
    fake_upstream.follow(handle)
    clock.advance(INTERVAL + 1)
    worker.run_once()
    assert receiver.received == []
    assert hook(client, sub).get_json()["status"] == "active"  # transient: nothing to tell the user
    calls = upstream_calls(fake_upstream)
    clock.advance(INTERVAL / 2)
    worker.run_once()
    assert upstream_calls(fake_upstream) == calls
    clock.advance(INTERVAL / 2 + 1)
    worker.run_once()
    assert len(receiver.received) == 1


def test_a_refresh_in_progress_elsewhere_is_not_doubled(client, fake_upstream, receiver, worker, clock, svc):
    handle, _ = subscribe(client, fake_upstream, receiver)
    with svc.sessions.begin() as session:  # someone else (a trigger call) holds the lease
        session.execute(update(Watch).where(Watch.handle == handle)
                        .values(lease_token="x" * 32, lease_until=utcnow() + dt.timedelta(seconds=60)))
    calls = upstream_calls(fake_upstream)
    clock.advance(INTERVAL + 1)
    worker.run_once()
    assert upstream_calls(fake_upstream) == calls


# ---------------------------------------------------------------- the loop


def test_run_loop_delivers_and_stops_cleanly(client, fake_upstream, receiver, svc, clock):
    handle, sub = subscribe(client, fake_upstream, receiver)
    fake_upstream.follow(handle)
    clock.advance(INTERVAL + 1)
    worker = Worker(svc, Options(idle_seconds=0.05), clock=clock)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        assert receiver.wait_for(1, timeout=10)
    finally:
        worker.stop()
        thread.join(5)
        worker.close()
    assert not thread.is_alive()
    assert worker.stats["refreshed"] == 1 and worker.stats["delivered"] == 1
    assert json.loads(receiver.received[0][1])["followedBy"] == handle


# ---------------------------------------------------------------- stored keys


def test_a_key_that_cannot_be_decrypted_pauses_the_watch(client, fake_upstream, receiver, worker, clock, svc,
                                                         monkeypatch):
    _, sub = subscribe(client, fake_upstream, receiver)
    monkeypatch.setattr(svc, "vault", KeyVault("another-secret-key"))  # SECRET_KEY changed, no OLD_SECRET_KEYS
    clock.advance(INTERVAL + 1)
    worker.run_once()
    shown = hook(client, sub).get_json()
    assert shown["status"] == "paused" and "can no longer be read" in shown["statusReason"]


def test_refresh_reencrypts_the_key_during_a_rotation(client, fake_upstream, receiver, worker, clock, svc,
                                                      monkeypatch):
    handle, _ = subscribe(client, fake_upstream, receiver)
    old_secret = svc.settings.secret_key
    monkeypatch.setattr(svc, "vault", KeyVault("the-new-secret-key", (old_secret,)))
    monkeypatch.setattr(worker_module, "ROTATING", True)
    clock.advance(INTERVAL + 1)
    worker.run_once()
    with svc.sessions() as session:
        stored = session.scalar(select(Watch.api_key_enc).where(Watch.handle == handle))
    assert KeyVault("the-new-secret-key").decrypt(stored) == API_KEY
