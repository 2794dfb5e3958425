"""Real `python -m integration.worker` processes sharing one database: several workers
split the work without a double refresh or a double delivery, a worker SIGKILLed
mid-delivery or mid-refresh loses nothing once its claims expire, and SIGTERM lets a
worker finish what it started.

Subscriptions are made through the in-process API (`client`) on the same database."""
from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select, update

from integration.models import Delivery, Subscription, Watch, utcnow
from tests.conftest import AUTH, PG_URL, free_port, kill, start_worker, stop_worker, unique_handle
from tests.receiver import Answer, Receiver


@pytest.fixture
def svc(app):
    return app.extensions["tiktok_following"]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def workers():
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def subscribe(client, fake, receiver) -> str:
    handle = unique_handle()
    fake.seed(handle, 2)
    resp = client.post("/v1/zapier/hooks", json={"handle": handle, "targetUrl": receiver.url}, headers=AUTH)
    assert resp.status_code == 201, resp.get_json()
    return handle


def make_due(svc) -> None:
    with svc.sessions.begin() as session:
        session.execute(update(Watch).values(next_poll_at=utcnow()))


def delivery_states(svc) -> list[str]:
    with svc.sessions() as session:
        return list(session.scalars(select(Delivery.status)))


def test_multi_worker_claims_on_postgresql_are_tested():
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set: the multi-worker tests ran on SQLite only, "
                    "not on PostgreSQL (FOR UPDATE SKIP LOCKED)")


def test_three_workers_share_the_work_without_doubles(client, svc, fake_upstream, receiver, workers, tmp_path,
                                                      database_url):
    handles = [subscribe(client, fake_upstream, receiver) for _ in range(30)]
    for handle in handles:
        fake_upstream.follow(handle)
    fake_upstream.delay = 0.2  # each refresh takes a while, so one worker alone would fall behind
    for i in range(3):
        workers.append(start_worker(database_url, fake_upstream.url, tmp_path / f"w{i}.log",
                                    WORKER_CONCURRENCY=3, POLL_INTERVAL_SECONDS=300))
    spent = fake_upstream.credits_spent()
    make_due(svc)

    assert receiver.wait_for(30, timeout=60), f"only {len(receiver.received)} arrived"
    time.sleep(1.5)  # anything doubled would arrive by now
    assert len(receiver.received) == 30
    assert len(set(receiver.ids())) == 30
    assert fake_upstream.credits_spent() - spent == 30  # one refresh per watch in the interval
    stats = [stop_worker(p) for p in workers]
    assert sum(s["refreshed"] for s in stats) == 30
    assert sum(s["delivered"] for s in stats) == 30
    assert sum(1 for s in stats if s["refreshed"]) >= 2, stats  # the work was shared
    assert delivery_states(svc) == ["delivered"] * 30


def test_a_worker_killed_mid_delivery_loses_nothing(client, svc, fake_upstream, receiver, workers, tmp_path,
                                                    database_url):
    handle = subscribe(client, fake_upstream, receiver)
    fake_upstream.follow(handle)
    receiver.answer(200, delay=6)  # the first attempt hangs: the worker is killed meanwhile
    env = dict(WORKER_CLAIM_SECONDS=4, POLL_INTERVAL_SECONDS=300)
    workers.append(start_worker(database_url, fake_upstream.url, tmp_path / "a.log", **env))
    make_due(svc)
    assert receiver.wait_started(1, timeout=20)
    kill(workers[0])
    assert delivery_states(svc) == ["pending"]  # claimed, never recorded

    workers.append(start_worker(database_url, fake_upstream.url, tmp_path / "b.log", **env))
    assert receiver.wait_started(2, timeout=20)  # after the 4 s claim expired
    deadline = time.monotonic() + 10
    while delivery_states(svc) != ["delivered"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert delivery_states(svc) == ["delivered"]
    stats = stop_worker(workers[1])
    assert stats["delivered"] == 1 and stats["refreshed"] == 0  # the refresh was not repeated
    receiver.wait_for(2, timeout=10)
    assert len(set(receiver.ids())) == 1  # at least once, always under the same webhook-id


def test_a_worker_killed_mid_refresh_loses_nothing(client, svc, fake_upstream, receiver, workers, tmp_path,
                                                   database_url):
    handle = subscribe(client, fake_upstream, receiver)
    fake_upstream.follow(handle)
    fake_upstream.add_fault(status=500, hang=6)  # the first refresh hangs (then fails, so it is free)
    env = dict(LEASE_SECONDS=3, POLL_INTERVAL_SECONDS=2)
    workers.append(start_worker(database_url, fake_upstream.url, tmp_path / "a.log", **env))
    make_due(svc)
    deadline = time.monotonic() + 20
    while True:  # the lease shows the refresh has started
        with svc.sessions() as session:
            if session.scalar(select(Watch.lease_token)) is not None:
                break
        assert time.monotonic() < deadline, "the refresh never started"
        time.sleep(0.05)
    kill(workers[0])
    hung_at = time.monotonic()

    workers.append(start_worker(database_url, fake_upstream.url, tmp_path / "b.log", **env))
    assert receiver.wait_for(1, timeout=30)
    time.sleep(2.5)  # more polls: the follow must not come again
    stats = stop_worker(workers[1])
    assert len(receiver.received) == 1
    assert delivery_states(svc) == ["delivered"]
    assert stats["refreshed"] >= 1
    # Let the hung upstream request finish before the next test resets the fake.
    time.sleep(max(0.0, 6.5 - (time.monotonic() - hung_at)))


def test_sigterm_finishes_the_send_in_flight(client, svc, fake_upstream, receiver, workers, tmp_path,
                                             database_url):
    handle = subscribe(client, fake_upstream, receiver)
    fake_upstream.follow(handle)
    receiver.answer(200, delay=2)
    workers.append(start_worker(database_url, fake_upstream.url, tmp_path / "a.log", POLL_INTERVAL_SECONDS=300))
    make_due(svc)
    assert receiver.wait_started(1, timeout=20)
    workers[0].send_signal(signal.SIGTERM)
    stats = stop_worker(workers[0])
    assert stats["delivered"] == 1
    assert delivery_states(svc) == ["delivered"]



def test_a_signal_while_the_stopped_worker_exits_does_not_kill_it(fake_upstream, tmp_path, database_url):
    """A supervisor may signal again while the worker exits. Once it has stopped, SIGTERM is
    ignored: CPython gives the signals it handled in Python back their default action (ending
    the process, -15) as the interpreter finalizes. It exits 0 whatever comes."""
    worker = start_worker(database_url, fake_upstream.url, tmp_path / "w.log")
    worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while worker.poll() is None and time.monotonic() < deadline:
        if b'"worker stopped"' in worker.log_path.read_bytes():
            worker.send_signal(signal.SIGTERM)  # again and again, through the interpreter's exit
        time.sleep(0.0002)
    assert worker.wait(5) == 0, worker.log_path.read_text()[-2000:]


# ---------------------------------------------------------------- one owner's hostile receivers

OTHER_KEY = "another-test-key"


def test_receivers_dripping_their_answer_hurt_only_their_owner(client, svc, fake_upstream, workers, tmp_path,
                                                              database_url):
    """Owner B's 40 subscriptions point at a receiver that answers one byte a second (about
    40 s per answer). Owner A's deliveries must still arrive, with the default concurrency;
    B's sends end at their deadline (2 s here) and are retried later."""
    drip = Receiver(default=Answer(drip=1.0))
    fine = Receiver()
    try:
        fake_upstream.add_key(OTHER_KEY)
        b_handle = unique_handle()
        fake_upstream.seed(b_handle, 1)
        for i in range(40):
            resp = client.post("/v1/zapier/hooks", json={"handle": b_handle, "targetUrl": f"{drip.url}?n={i}"},
                               headers={"Authorization": f"Bearer {OTHER_KEY}"})
            assert resp.status_code == 201, resp.get_json()
        a_handle = unique_handle()
        fake_upstream.seed(a_handle, 1)
        # A's receiver is reached as "localhost": another target host than B's 127.0.0.1.
        resp = client.post("/v1/zapier/hooks", json={"handle": a_handle, "targetUrl": fine.url_for(host="localhost")},
                           headers=AUTH)
        assert resp.status_code == 201, resp.get_json()

        fake_upstream.follow(b_handle)
        workers.append(start_worker(database_url, fake_upstream.url, tmp_path / "w.log",
                                    WORKER_CLAIM_SECONDS=4, POLL_INTERVAL_SECONDS=300))
        with svc.sessions.begin() as session:
            session.execute(update(Watch).where(Watch.handle == b_handle).values(next_poll_at=utcnow()))
        assert drip.wait_started(4, timeout=20)  # B's sends are hanging on the drip

        # Only now does A get new follows: under oldest-first they queue behind B's 40.
        for _ in range(3):
            fake_upstream.follow(a_handle)
        with svc.sessions.begin() as session:
            session.execute(update(Watch).where(Watch.handle == a_handle).values(next_poll_at=utcnow()))
        assert fine.wait_for(3, timeout=20), f"owner A got {fine.answered} of 3 deliveries"

        deadline = time.monotonic() + 20
        while True:  # B's first sends were cut at the deadline and wait for their retry
            with svc.sessions() as session:
                cut = session.execute(select(Delivery.attempts, Delivery.last_error, Delivery.next_attempt_at)
                                      .join(Subscription).where(Subscription.owner_hash == svc.owner(OTHER_KEY),
                                                                Delivery.attempts > 0)).all()
            if len(cut) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(cut) >= 4
        assert all(error == "timeout: no complete answer within 2 s" for _, error, _ in cut)
        # MAX_SENDS_PER_OWNER (4): B's fifth send started only when one of its first four was cut
        # (it starts just after the cut is recorded: wait for it to arrive).
        assert drip.wait_started(5, timeout=20)
        arrivals = sorted(r.at for r in drip.requests)
        assert arrivals[3] - arrivals[0] < 1.0 and arrivals[4] - arrivals[3] > 1.0, arrivals[:6]
        stats = stop_worker(workers[0])
        assert stats["delivered"] == 3 and stats["retry"] >= 4
    finally:
        drip.close()
        fine.close()


def test_worker_metrics_listen_on_loopback_only_by_default(workers, tmp_path, database_url, fake_upstream):
    port = free_port()
    workers.append(start_worker(database_url, fake_upstream.url, tmp_path / "w.log", WORKER_METRICS_PORT=port))
    assert requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200
    assert _listening_addresses(port) == {"127.0.0.1"}
    stop_worker(workers[0])


def _listening_addresses(port: int) -> set[str]:
    """The local addresses listening on `port`, from /proc/net/tcp (state 0A = LISTEN)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found
