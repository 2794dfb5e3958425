"""Cost controls (CONTRACT.md "Cost controls", GET /usage): the exact credit ledger, the
daily budget, checkEvery, and the worker spending within them. Both databases."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import event, func, select, update

from integration import ledger
from integration.models import CreditDay, Watch, WatchDay, utcnow
from integration.worker import Worker
from tests.conftest import AUTH, Clock, unique_handle

BUDGET = "X-Daily-Credit-Budget"


def with_budget(n) -> dict:
    return {**AUTH, BUDGET: str(n)}


def usage(client, headers=AUTH) -> dict:
    resp = client.get("/v1/api/usage", headers=headers)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def trigger(client, handle, headers=AUTH, **body):
    return client.post("/v1/zapier/triggers/new-following", json={"handle": handle, **body}, headers=headers)


@pytest.fixture
def svc(app):
    shared = app.extensions["tiktok_following"]
    return dataclasses.replace(shared, clock=Clock())


# ---------------------------------------------------------------- the ledger


def test_the_credit_line_counts_each_credit_in_its_own_transaction_that_sqlalchemy_sees(svc):
    """The action's credit is written on a Core connection (ledger.add): counts add up on both
    databases, each call is one transaction of its own, and SQLAlchemy's events see it (the
    transaction counts of tests/test_refresh_cost.py and test_unit_cost.py rely on them)."""
    owner, today = unique_handle(), utcnow().date()
    begun = []

    def on_begin(connection):
        begun.append(connection)

    event.listen(svc.engine, "begin", on_begin)
    try:
        ledger.add(svc.sessions, owner, today, credits=1, reserved=1)
        ledger.add(svc.sessions, owner, today, credits=1, reserved=-1)
        ledger.add(svc.sessions, owner, today, reserved=2)
    finally:
        event.remove(svc.engine, "begin", on_begin)
    assert len(begun) == 3
    with svc.sessions() as session:
        row = session.execute(select(CreditDay.credits, CreditDay.reserved)
                              .where(CreditDay.owner_hash == owner, CreditDay.day == today)).one()
    assert tuple(row) == (2, 2)


def test_every_upstream_200_is_counted_once_whoever_spent_it(client, fake_upstream, svc):
    handle = unique_handle()
    fake_upstream.seed(handle, 25)
    assert client.get("/v1/api/auth/test", headers=AUTH).status_code == 200          # what the fake charges
    probe = fake_upstream.credits_spent()
    resp = client.post("/v1/api/following", json={"handle": handle, "count": 10, "limit": 25}, headers=AUTH)
    assert resp.status_code == 200 and resp.headers["X-Credits-Used"] == "3"        # 3 pages
    fake_upstream.fail_next(503)                                                     # free, then retried
    assert trigger(client, handle).status_code == 200                                # baseline: 1
    fake_upstream.follow(handle)
    assert len(trigger(client, handle).get_json()) >= 1                              # refresh: 1
    fake_upstream.fail_next(404)
    assert client.post("/v1/api/following", json={"handle": handle}, headers=AUTH).status_code == 404  # free

    spent = fake_upstream.credits_spent()
    assert spent == probe + 5
    report = usage(client)
    assert report["creditsToday"] == spent == report["days"][0]["credits"]
    assert report["days"][0]["refreshes"] == 2
    assert len(report["days"]) == 30 and report["days"][0]["day"] == utcnow().date().isoformat()
    assert report["creditsLast30Days"] == spent
    (watch,) = [w for w in report["watches"] if w["handle"] == handle]
    assert watch["creditsLast30Days"] == 2 and watch["lastCheckAt"] and watch["status"] == "active"
    # Usage itself is free.
    assert fake_upstream.credits_spent() == spent


def test_the_worker_counts_its_refreshes_to_the_owner(client, fake_upstream, svc):
    handle = unique_handle()
    fake_upstream.seed(handle, 3)
    resp = client.post("/v1/make/hooks", json={"handle": handle, "targetUrl": "http://127.0.0.1:9/hook",
                                                "checkEvery": 10}, headers=AUTH)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["checkEvery"] == 10
    with svc.sessions() as session:  # 11 minutes later
        session.execute(update(Watch).values(last_refresh_at=utcnow() - dt.timedelta(minutes=11),
                                             next_poll_at=svc.clock()))
        session.commit()
    worker = Worker(svc)
    try:
        assert worker.refresh_due() == 1
    finally:
        worker.close()
    report = usage(client)
    assert report["creditsToday"] == 2 == fake_upstream.credits_spent()
    assert report["days"][0]["refreshes"] == 2
    (watch,) = report["watches"]
    assert watch["checkEvery"] == 10 and watch["creditsLast30Days"] == 2
    # The next poll is one checkEvery after this refresh, not POLL_INTERVAL_SECONDS.
    nxt = dt.datetime.fromisoformat(watch["nextCheckAt"].rstrip("Z"))
    assert dt.timedelta(minutes=9) < nxt - svc.clock() <= dt.timedelta(minutes=10)


# ---------------------------------------------------------------- the budget


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "+3", "100000000", "١٢"])
def test_a_bad_budget_header_is_a_400_naming_it(client, fake_upstream, value):
    resp = client.post("/v1/api/following", json={"handle": "alice"}, headers={**AUTH, BUDGET: value})
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["code"] == "invalid_budget_header" and BUDGET in body["error"] and BUDGET in body["fields"]
    assert fake_upstream.credits_spent() == 0


def test_an_empty_budget_header_is_no_budget(client, fake_upstream):
    # What an app sends when its optional connection field is left blank.
    fake_upstream.seed("alice", 3)
    assert client.post("/v1/api/following", json={"handle": "alice"}, headers={**AUTH, BUDGET: " "}).status_code == 200


def test_a_budget_of_zero_spends_nothing(client, fake_upstream):
    fake_upstream.seed("alice", 3)
    resp = client.post("/v1/api/following", json={"handle": "alice"}, headers=with_budget(0))
    assert resp.status_code == 402
    body = resp.get_json()
    assert body["code"] == "daily_budget_reached"
    tomorrow = (utcnow().date() + dt.timedelta(days=1)).isoformat()
    assert f"{tomorrow} 00:00 UTC" in body["error"]
    assert client.get("/v1/api/auth/test", headers=with_budget(0)).status_code == 402
    # A new watch has no journal to answer from: the trigger says why instead of a silent [].
    assert trigger(client, "alice", with_budget(0)).get_json()["code"] == "daily_budget_reached"
    assert fake_upstream.credits_spent() == 0 and len(fake_upstream.requests) == 0


def test_the_budget_stops_refreshes_and_triggers_answer_from_the_journal(client, fake_upstream):
    handle = unique_handle()
    fake_upstream.seed(handle, 3)
    assert trigger(client, handle, with_budget(3)).status_code == 200   # baseline: 1 of 3
    followed = fake_upstream.follow(handle)
    items = trigger(client, handle, with_budget(3)).get_json()          # 2 of 3
    assert items[0]["id"] == str(followed["user"]["id"])
    assert client.post("/v1/api/following", json={"handle": handle}, headers=with_budget(3)).status_code == 200
    spent = fake_upstream.credits_spent()
    assert spent == 3
    fake_upstream.follow(handle)
    again = trigger(client, handle, with_budget(3))                      # over budget: the journal, free
    assert again.status_code == 200 and again.get_json() == items and again.headers["X-Credits-Used"] == "0"
    action = client.post("/v1/api/following", json={"handle": handle}, headers=with_budget(3))
    assert action.status_code == 402 and action.get_json()["code"] == "daily_budget_reached"
    assert fake_upstream.credits_spent() == spent
    # A larger budget lets it spend again; no reservation was left behind.
    assert client.post("/v1/api/following", json={"handle": handle}, headers=with_budget(4)).status_code == 200
    report = usage(client, with_budget(4))
    assert report["creditsToday"] == 4 and report["dailyBudget"] == 4 and report["budgetLeft"] == 0


def test_a_budget_reached_mid_listing_answers_the_pages_already_paid_for(client, fake_upstream):
    handle = unique_handle()
    fake_upstream.seed(handle, 40)
    resp = client.post("/v1/api/following", json={"handle": handle, "count": 10, "limit": 40}, headers=with_budget(2))
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["pages"], body["count"], body["hasMore"]) == (2, 20, True) and body["nextMinTime"] is not None
    assert fake_upstream.credits_spent() == 2


def test_failed_calls_do_not_use_up_the_budget(client, fake_upstream, app):
    fake_upstream.seed("alice", 3)
    fake_upstream.fail_next(503, times=1)  # retried inside one call, on the same reservation
    assert client.post("/v1/api/following", json={"handle": "alice"}, headers=with_budget(1)).status_code == 200
    svc = app.extensions["tiktok_following"]
    with svc.sessions() as session:
        row = session.scalar(select(CreditDay))
    assert (row.credits, row.reserved) == (1, 0)


def test_the_worker_spends_within_the_budget_stored_with_the_subscription(client, fake_upstream, svc):
    handle = unique_handle()
    fake_upstream.seed(handle, 3)
    resp = client.post("/v1/api/hooks", json={"handle": handle, "targetUrl": "http://127.0.0.1:9/hook"},
                       headers=with_budget(1))
    assert resp.status_code == 201
    with svc.sessions() as session:
        assert session.scalar(select(Watch.daily_budget)) == 1
    # Due now (not by moving the clock an hour on: after 23:00 UTC that is tomorrow's budget).
    with svc.sessions.begin() as session:
        session.execute(update(Watch).values(next_poll_at=svc.clock() - dt.timedelta(seconds=1)))
    worker = Worker(svc)
    try:
        assert worker.refresh_due() == 1
    finally:
        worker.close()
    assert fake_upstream.credits_spent() == 1  # the subscribe's baseline used today's one credit
    with svc.sessions() as session:
        next_poll, = session.execute(select(Watch.next_poll_at)).one()
        assert session.scalar(select(CreditDay.reserved)) == 0
    reset = dt.datetime.combine(svc.clock().date() + dt.timedelta(days=1), dt.time())
    assert next_poll == reset


# ---------------------------------------------------------------- checkEvery


@pytest.mark.parametrize("value", [0, 1441, -5, "often", 2.5, True, None])
def test_check_every_out_of_range_is_a_400_naming_it(client, fake_upstream, value):
    resp = trigger(client, "alice", checkEvery=value)
    assert resp.status_code == 400
    assert "checkEvery" in resp.get_json()["fields"]
    resp = client.post("/v1/api/hooks", json={"handle": "alice", "targetUrl": "http://127.0.0.1:9/h",
                                              "checkEvery": value}, headers=AUTH)
    assert resp.status_code == 400 and "checkEvery" in resp.get_json()["fields"]
    assert fake_upstream.credits_spent() == 0


def test_polls_inside_check_every_answer_from_the_journal(client, fake_upstream, app):
    # The test app refreshes on every call (REFRESH_WINDOW_SECONDS=0) unless checkEvery says otherwise.
    handle = unique_handle()
    fake_upstream.seed(handle, 3)
    assert trigger(client, handle, checkEvery=30).status_code == 200
    fake_upstream.follow(handle)
    for _ in range(3):
        assert trigger(client, handle, checkEvery=30).headers["X-Credits-Used"] == "0"
    assert trigger(client, handle).headers["X-Credits-Used"] == "0"  # whoever asks
    assert fake_upstream.credits_spent() == 1
    svc = app.extensions["tiktok_following"]
    with svc.sessions() as session:
        session.execute(update(Watch).values(last_refresh_at=utcnow() - dt.timedelta(minutes=31)))
        session.commit()
    assert len(trigger(client, handle, checkEvery="30").get_json()) >= 1  # "30": as Zapier's choice sends it
    assert fake_upstream.credits_spent() == 2


def test_the_smallest_check_every_of_one_key_wins(client, fake_upstream):
    handle = unique_handle()
    fake_upstream.seed(handle, 3)
    trigger(client, handle, checkEvery=60)
    trigger(client, handle, checkEvery=5)
    trigger(client, handle, checkEvery=120)
    (watch,) = [w for w in usage(client)["watches"] if w["handle"] == handle]
    assert watch["checkEvery"] == 5


def test_watch_days_go_with_their_watch(client, fake_upstream, app):
    handle = unique_handle()
    fake_upstream.seed(handle, 3)
    trigger(client, handle)
    svc = app.extensions["tiktok_following"]
    with svc.sessions() as session:
        assert session.scalar(select(WatchDay.credits)) == 1
        session.delete(session.scalar(select(Watch)))
        session.commit()
        assert session.scalar(select(WatchDay)) is None


def test_auto_checks_a_busy_handle_more_often_than_a_quiet_one_at_the_same_cost(client, fake_upstream, svc):
    busy, quiet = unique_handle("busy"), unique_handle("quiet")
    for handle in (busy, quiet):
        fake_upstream.seed(handle, 3)
        resp = client.post("/v1/api/hooks", json={"handle": handle, "targetUrl": "http://127.0.0.1:9/h",
                                                  "checkEvery": "auto"}, headers=AUTH)
        assert resp.status_code == 201 and resp.get_json()["checkEvery"] == "auto"
    for _ in range(20):
        fake_upstream.follow(busy)

    def worker_round():
        with svc.sessions() as session:  # an hour later: past any interval "auto" may give
            session.execute(update(Watch).values(next_poll_at=svc.clock(),
                                                 last_refresh_at=utcnow() - dt.timedelta(hours=1)))
            session.commit()
        worker = Worker(svc)
        try:
            assert worker.refresh_due() == 2
        finally:
            worker.close()

    worker_round()  # the busy handle's journal fills (both are scheduled concurrently: either order)
    worker_round()  # now both are scheduled knowing it
    now = svc.clock()
    with svc.sessions() as session:
        due = {h: t - now for h, t in session.execute(select(Watch.handle, Watch.next_poll_at))}
    assert dt.timedelta(minutes=1) <= due[busy] < dt.timedelta(minutes=15) < due[quiet] <= dt.timedelta(days=1)
    # Together they cost what two fixed 15-minute checks cost (2 x 96 checks a day).
    per_day = sum(86400 / d.total_seconds() for d in due.values())
    assert per_day == pytest.approx(2 * 96, rel=0.02)


def test_the_worker_counts_a_trigger_refresh_inside_check_every(client, fake_upstream, svc):
    """checkEvery holds whoever asks: a trigger call refreshed the watch 5 minutes before the
    worker's turn, so the worker does not pay again; it polls one interval after that refresh."""
    handle = unique_handle()
    fake_upstream.seed(handle, 3)
    assert client.post("/v1/api/hooks", json={"handle": handle, "targetUrl": "http://127.0.0.1:9/h",
                                              "checkEvery": 10}, headers=AUTH).status_code == 201
    with svc.sessions() as session:  # as if a trigger call had refreshed it 5 minutes ago
        refreshed_at = svc.clock() - dt.timedelta(minutes=5)
        session.execute(update(Watch).values(last_refresh_at=refreshed_at, next_poll_at=svc.clock()))
        session.commit()
    spent = fake_upstream.credits_spent()
    worker = Worker(svc)
    try:
        assert worker.refresh_due() == 1
    finally:
        worker.close()
    assert fake_upstream.credits_spent() == spent
    with svc.sessions() as session:
        assert session.scalar(select(Watch.next_poll_at)) == refreshed_at + dt.timedelta(minutes=10)


# ---------------------------------------------------------------- a refresh's credits


@pytest.mark.parametrize("budget", [None, 5])
def test_a_refresh_that_does_not_commit_still_counts_its_credit(client, fake_upstream, app, monkeypatch, budget):
    """A refresh's credits are written by its commit; when the commit does not happen (here the
    detection's write fails after the upstream answered), they are written at once, to the
    owner and to the watch, and a budget's reservation is turned into the credit."""
    from integration import watches

    handle = unique_handle()
    fake_upstream.seed(handle, 3)
    headers = AUTH if budget is None else with_budget(budget)
    assert trigger(client, handle, headers=headers).status_code == 200  # the baseline: 1 credit
    svc = app.extensions["tiktok_following"]

    def failing_write(*args, **kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(watches, "_write", failing_write)
    before = fake_upstream.credits_spent()
    assert trigger(client, handle, headers=headers).status_code == 500
    assert fake_upstream.credits_spent() == before + 1
    with svc.sessions() as session:
        owner = session.scalar(select(CreditDay))
        watch_credits = session.scalar(select(func.sum(WatchDay.credits)))
        lease = session.scalar(select(Watch.lease_token).where(Watch.handle == handle))
    assert (owner.credits, owner.reserved) == (2, 0)
    assert watch_credits == 2  # the baseline's and the failed refresh's
    assert lease is None  # released at once, not left to expire
