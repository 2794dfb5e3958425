"""The worker, driven in-process (Worker.run_once / refresh_due / deliver_due) on both
databases, against the fake upstream and a real webhook receiver on 127.0.0.1.

A movable clock stands in for waiting: the worker's "now" is real time + an offset."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
import threading
import time

import pytest
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from integration import claims, policies
from integration.delivery import RETRY_SCHEDULE, SendResult
from integration.jobs import DeliveryJob, Outcome
from integration.models import Delivery, Subscription, Watch
from integration.security import KeyVault
from integration.sendgate import SendGate
from integration.worker import Worker
from tests.conftest import API_KEY, AUTH, Clock, unique_handle
from tests.receiver import Receiver

INTERVAL = 300  # the default POLL_INTERVAL_SECONDS of the test app


def verified(secret: str, headers: dict, body: bytes) -> dict:
    """The event, after checking the Standard Webhooks signature (raises if it is wrong)."""
    return Webhook(secret).verify(body, headers)


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def svc(app, clock):
    """The app's services with the movable clock and a short idle time, for the worker."""
    shared = app.extensions["tiktok_following"]
    return dataclasses.replace(shared, clock=clock,
                               settings=dataclasses.replace(shared.settings, worker_idle_seconds=0.05))


@pytest.fixture
def worker(svc):
    w = Worker(svc)
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
    events = [verified(sub["secret"], r.headers, r.body) for r in receiver.received]
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
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == pending[0]["id"]
    assert verified(sub["secret"], second.headers, second.body) == verified(sub["secret"], first.headers, first.body)
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
    clock.advance(INTERVAL + 1)
    with svc.sessions.begin() as session:  # someone else (a trigger call) holds the lease
        session.execute(update(Watch).where(Watch.handle == handle)
                        .values(lease_token="x" * 32, lease_until=clock() + dt.timedelta(seconds=60)))
    calls = upstream_calls(fake_upstream)
    worker.run_once()
    assert upstream_calls(fake_upstream) == calls


# ---------------------------------------------------------------- the loop


def test_run_loop_delivers_and_stops_cleanly(client, fake_upstream, receiver, svc, clock):
    handle, sub = subscribe(client, fake_upstream, receiver)
    fake_upstream.follow(handle)
    clock.advance(INTERVAL + 1)
    worker = Worker(svc)
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
    assert json.loads(receiver.received[0].body)["followedBy"] == handle


def test_stop_is_safe_in_a_signal_handler_that_interrupts_the_loop_or_itself(worker):
    """main() calls stop() from the SIGTERM handler, which Python runs in the main thread between
    any two lines: also inside the loop's wait, or inside the stop() of a first SIGTERM (two close
    together). Here stop() runs at every line those execute (sys.settrace), in a thread so that a
    deadlock fails the test instead of hanging it. With threading.Event it deadlocked: the handler's
    set() waited for the Event's lock, held by the very wait() or set() it had interrupted."""
    interrupting = False

    def stop_at_every_line(frame, event, arg):
        nonlocal interrupting
        if event == "line" and not interrupting:
            interrupting = True  # one level: a handler interrupted by a second one
            try:
                worker.stop()
            finally:
                interrupting = False
        return stop_at_every_line

    def main_thread():
        sys.settrace(stop_at_every_line)
        try:
            worker._wake.clear()
            worker._wake.wait(5)  # the idle loop's sleep
            worker.stop()  # a first SIGTERM
        finally:
            sys.settrace(None)

    thread = threading.Thread(target=main_thread, daemon=True)  # daemon: a deadlocked one must not block exit
    started = time.monotonic()
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "stop() deadlocked inside the wait or stop() it interrupted"
    assert time.monotonic() - started < 4  # the stop woke the sleep
    worker.run()  # returns: the worker is stopped


# ---------------------------------------------------------------- stored keys


def test_a_key_that_cannot_be_decrypted_pauses_the_watch(client, fake_upstream, receiver, worker, clock, svc,
                                                         monkeypatch):
    _, sub = subscribe(client, fake_upstream, receiver)
    monkeypatch.setattr(svc, "vault", KeyVault("another-secret-key"))  # SECRET_KEY changed, no OLD_SECRET_KEYS
    clock.advance(INTERVAL + 1)
    worker.run_once()
    shown = hook(client, sub).get_json()
    assert shown["status"] == "paused" and "can no longer be read" in shown["statusReason"]


def test_refresh_reencrypts_the_key_during_a_rotation(client, fake_upstream, receiver, clock, svc):
    handle, _ = subscribe(client, fake_upstream, receiver)
    old_secret = svc.settings.secret_key
    rotating = dataclasses.replace(svc, vault=KeyVault("the-new-secret-key", (old_secret,)),
                                   settings=dataclasses.replace(svc.settings, old_secret_keys=(old_secret,)))
    clock.advance(INTERVAL + 1)
    worker = Worker(rotating)
    try:
        worker.run_once()
    finally:
        worker.close()
    with svc.sessions() as session:
        stored = session.scalar(select(Watch.api_key_enc).where(Watch.handle == handle))
    assert KeyVault("the-new-secret-key").decrypt(stored) == API_KEY


# ---------------------------------------------------------------- missing or hidden lists


def test_a_missing_or_hidden_list_pauses_the_watch_with_a_reason_until_the_user_subscribes_again(
        client, fake_upstream, receiver, worker, clock):
    handle, sub = subscribe(client, fake_upstream, receiver)
    fake_upstream.fail_next(404)  # renamed, banned, or its following list made private
    clock.advance(INTERVAL + 1)
    worker.run_once()
    shown = hook(client, sub).get_json()
    assert shown["status"] == "paused"
    assert "renamed or banned" in shown["statusReason"] and "private" in shown["statusReason"]
    calls = upstream_calls(fake_upstream)
    for _ in range(5):  # no retry storm: no call at all while paused
        clock.advance(INTERVAL + 1)
        worker.run_once()
    assert upstream_calls(fake_upstream) == calls

    resp = client.post("/v1/zapier/hooks", json={"handle": handle, "targetUrl": receiver.url}, headers=AUTH)
    assert resp.status_code == 200 and resp.get_json()["status"] == "active"  # the same subscription, resumed
    fake_upstream.follow(handle)
    clock.advance(INTERVAL + 1)
    worker.run_once()
    assert hook(client, sub).get_json()["status"] == "active"
    assert len(receiver.received) == 1  # the new follow


# ---------------------------------------------------------------- fairness between owners

OTHER_KEY = "another-test-key"


def two_owners_with_due_deliveries(client, fake_upstream, receiver, worker, clock, svc, b_deliveries: int = 6):
    """Owner B: `b_deliveries` due deliveries, older than owner A's one. Returns (a_owner, b_owner)."""
    fake_upstream.add_key(OTHER_KEY)
    a_handle, _ = subscribe(client, fake_upstream, receiver)
    b_handle = unique_handle()
    fake_upstream.seed(b_handle, 1)
    resp = client.post("/v1/zapier/hooks", json={"handle": b_handle, "targetUrl": receiver.url},
                       headers={"Authorization": f"Bearer {OTHER_KEY}"})
    assert resp.status_code == 201
    fake_upstream.follow(a_handle)
    for _ in range(b_deliveries):
        fake_upstream.follow(b_handle)
    clock.advance(INTERVAL + 1)
    worker.refresh_due()
    a_owner, b_owner = svc.owner(API_KEY), svc.owner(OTHER_KEY)
    with svc.sessions.begin() as session:  # B's deliveries are the oldest
        for owner, age in ((b_owner, 60), (a_owner, 1)):
            session.execute(update(Delivery).where(Delivery.subscription_id.in_(
                select(Subscription.id).where(Subscription.owner_hash == owner)))
                .values(next_attempt_at=clock() - dt.timedelta(seconds=age)))
    return a_owner, b_owner


def test_deliveries_are_claimed_round_robin_across_owners(client, fake_upstream, receiver, worker, clock, svc):
    a_owner, b_owner = two_owners_with_due_deliveries(client, fake_upstream, receiver, worker, clock, svc)
    # Oldest first would hand B all three slots; round-robin gives A its turn.
    jobs = claims.claim_deliveries(svc, clock(), 3, claim_seconds=60, per_owner=2)
    assert sorted(job.owner_hash == a_owner for job in jobs) == [False, False, True]
    # At most per_owner each, even with slots to spare.
    more = claims.claim_deliveries(svc, clock(), 10, claim_seconds=60, per_owner=2)
    assert [job.owner_hash for job in more] == [b_owner, b_owner]
    # Owners at their cap in this worker are left out of the claim (once the claims above expired).
    later = claims.claim_deliveries(svc, clock() + dt.timedelta(seconds=61), 10, claim_seconds=60,
                                    per_owner=10, skip_owners=frozenset({b_owner}))
    assert [job.owner_hash for job in later] == [a_owner]


def test_a_delivery_whose_owner_is_at_its_cap_waits_without_losing_an_attempt(
        client, fake_upstream, receiver, worker, clock, svc):
    a_owner, b_owner = two_owners_with_due_deliveries(client, fake_upstream, receiver, worker, clock, svc)
    for _ in range(worker.gate.per_owner):  # B's sends in flight elsewhere in this worker fill its cap
        assert worker.gate.acquire(b_owner, "elsewhere.example") == 0.0
    worker.deliver_due()
    assert len(receiver.received) == 1  # A's
    with svc.sessions() as session:
        b_rows = session.execute(select(Delivery.status, Delivery.attempts, Delivery.claimed_until)
                                 .join(Subscription).where(Subscription.owner_hash == b_owner)).all()
    assert b_rows and all(row == ("pending", 0, None) for row in b_rows)  # given back, not attempted

    for _ in range(worker.gate.per_owner):
        worker.gate.release(b_owner, "elsewhere.example")
    while worker.deliver_due():  # at most per_owner at a time, all of them in the end
        pass
    assert len(receiver.received) == 1 + len(b_rows)


def test_a_host_over_its_request_rate_gets_its_deliveries_later_without_an_attempt(
        client, fake_upstream, receiver, clock, svc):
    slow = dataclasses.replace(svc, settings=dataclasses.replace(svc.settings, target_host_rps=0.5))
    worker = Worker(slow)
    try:
        two_owners_with_due_deliveries(client, fake_upstream, receiver, worker, clock, svc, b_deliveries=2)
        worker.deliver_due()  # one request to the host now; the next only 2 s later
        assert len(receiver.received) == 1
        with svc.sessions() as session:
            waiting = session.execute(select(Delivery.attempts, Delivery.next_attempt_at, Delivery.claimed_until)
                                      .where(Delivery.status == "pending")).all()
        assert len(waiting) == 2
        for attempts, next_at, claimed in waiting:
            assert attempts == 0 and claimed is None and next_at > clock()
    finally:
        worker.close()


# ---------------------------------------------------------------- the rules, as functions


@pytest.mark.parametrize("kind,status,next_poll", [
    ("unauthorized", "paused", None),
    ("not_found", "paused", None),
    ("no_credits", "backoff", 3600),
    ("rate_limited", None, 900),
    ("upstream_error", "-", None),
    ("timeout", "-", None),
])
def test_what_an_upstream_failure_does_to_a_watch(kind, status, next_poll):
    now = dt.datetime(2026, 1, 1)
    change = policies.after_upstream_failure(kind, 900.0, now=now, interval=300)
    if status == "-":
        assert change is None  # the claim already moved the next poll one interval ahead
        return
    assert change.status == status
    assert change.next_poll_at == (None if next_poll is None else now + dt.timedelta(seconds=next_poll))
    assert (change.reason is None) == (status is None)


@pytest.mark.parametrize("result,outcome,stored,retry", [
    (SendResult(200, None, None, True, False), Outcome.DELIVERED, "delivered", False),
    (SendResult(410, None, None, False, True), Outcome.GONE, "failed", False),
    (SendResult(500, None, None, False, False), Outcome.RETRY, "pending", True),
    (SendResult(None, None, "timeout: no complete answer within 2 s", False, False), Outcome.RETRY, "pending", True),
])
def test_what_a_receivers_answer_does_to_a_delivery(result, outcome, stored, retry):
    now = dt.datetime(2026, 1, 1)
    job = DeliveryJob("d1", 0, "sub_1", "owner", "https://hooks.example/x", "enc", b"{}")
    decided = policies.after_send(job, result, now=now)
    assert (decided.outcome, decided.status, decided.attempts) == (outcome, stored, 1)
    assert (decided.next_attempt_at > now) == retry
    assert decided.remove_subscription == (outcome is Outcome.GONE)
    last = dataclasses.replace(job, attempts=len(RETRY_SCHEDULE))  # the 8th and last attempt
    if retry:  # after the last step of the schedule, a failure is final
        assert policies.after_send(last, result, now=now).status == "failed"


def test_send_gate_caps_owners_and_hosts_and_paces_a_host():
    now = [0.0]
    gate = SendGate(per_owner=2, per_host=3, host_rps=2.0, monotonic=lambda: now[0])
    assert [gate.acquire("b", "slow.example") for _ in range(3)] == [0.0, 0.0, -1.0]  # owner cap
    assert gate.busy_owners() == {"b"}
    assert gate.acquire("a", "slow.example") == 0.5  # burst of 2 spent: the host's rate says wait
    now[0] = 0.5
    assert gate.acquire("a", "slow.example") == 0.0
    assert gate.acquire("c", "slow.example") == -1.0  # host cap: 3 in flight
    assert gate.acquire("c", "other.example") == 0.0
    gate.release("b", "slow.example")
    assert gate.busy_owners() == frozenset()
    now[0] = 10.0
    assert gate.acquire("c", "slow.example") == 0.0
