"""Nothing is stored for a key that never worked, refused keys are answered from a short
negative cache, and watches nobody uses are deleted (issue 9 item 3)."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from integration import known, retention
from integration.authcache import ADDRESS_REFUSALS, AuthMemory
from integration.models import AuthCheck, Event, KnownSegment, Subscription, Watch, utcnow
from integration.worker import Worker
from tests.conftest import AUTH, make_test_app, unique_handle


def bad(n: int) -> dict:
    return {"Authorization": f"Bearer random-key-{n:04d}"}


def count(svc, model) -> int:
    with svc.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def svc(app):
    return app.extensions["tiktok_following"]


def trigger(client, handle, headers=AUTH):
    return client.post("/v1/make/triggers/new-following", json={"handle": handle}, headers=headers)


def test_a_refused_key_stores_no_watch(client, svc, fake_upstream):
    handle = unique_handle()
    fake_upstream.seed(handle, 2)
    assert trigger(client, handle, bad(1)).status_code == 401
    hook = client.post("/v1/zapier/hooks", json={"handle": handle, "targetUrl": "http://127.0.0.1:9/x"},
                       headers=bad(2))
    assert hook.status_code == 401 and hook.get_json()["code"] == "invalid_api_key"
    assert count(svc, Watch) == 0 and count(svc, Subscription) == 0


def test_a_failed_first_refresh_stores_nothing_but_a_later_failure_keeps_the_watch(client, svc, fake_upstream):
    assert trigger(client, unique_handle("nobody")).status_code == 404  # the upstream knows no such handle
    assert count(svc, Watch) == 0
    handle = unique_handle()
    fake_upstream.seed(handle, 2)
    assert trigger(client, handle).status_code == 200
    fake_upstream.fail_next(500, times=10)
    assert trigger(client, handle).status_code == 502
    with svc.sessions() as session:
        assert len(known.all_of(session, session.scalar(select(Watch.id)))) == 2  # its baseline stays
    assert count(svc, Watch) == 1


def test_repeated_401s_are_answered_without_asking_upstream(client, fake_upstream):
    handle = unique_handle()
    fake_upstream.seed(handle, 2)
    first = trigger(client, handle, bad(1))
    asked = len(fake_upstream.requests)
    for route in ("/v1/api/auth/test", "/v1/api/hooks"):
        again = client.get(route, headers=bad(1))
        assert again.status_code == 401 and again.get_json() == first.get_json()
    assert trigger(client, handle, bad(1)).get_json() == first.get_json()
    assert len(fake_upstream.requests) == asked


def test_an_address_sending_many_bad_keys_is_refused_but_known_good_keys_pass(client, fake_upstream):
    handle = unique_handle()
    fake_upstream.seed(handle, 2)
    assert trigger(client, handle).status_code == 200  # this key worked in this process
    for n in range(ADDRESS_REFUSALS):
        assert trigger(client, handle, bad(n)).status_code == 401
    asked = len(fake_upstream.requests)
    assert trigger(client, handle, bad(999)).status_code == 401  # a new random key: not forwarded
    assert len(fake_upstream.requests) == asked
    assert trigger(client, handle).status_code == 200


def test_the_negative_cache_expires_and_can_be_turned_off(database_url, fake_upstream):
    now = [0.0]
    memory = AuthMemory(60, timer=lambda: now[0])
    memory.refused("owner", "10.0.0.1")
    assert memory.is_refused("owner", None)
    now[0] = 61
    assert not memory.is_refused("owner", None)
    off = AuthMemory(0)
    off.refused("owner", "10.0.0.1")
    assert not off.is_refused("owner", "10.0.0.1")
    app = make_test_app(database_url, fake_upstream.url, auth_negative_cache_seconds=0)
    client = app.test_client()
    client.get("/v1/api/auth/test", headers=bad(1))
    asked = len(fake_upstream.requests)
    client.get("/v1/api/auth/test", headers=bad(1))
    assert len(fake_upstream.requests) == asked + 1
    app.extensions["tiktok_following"].engine.dispose()


def test_the_auth_cache_is_per_services_not_global(database_url, fake_upstream):
    one = make_test_app(database_url, fake_upstream.url)
    two = make_test_app(database_url, fake_upstream.url)
    one.test_client().get("/v1/api/auth/test", headers=bad(1))
    asked = len(fake_upstream.requests)
    one.test_client().get("/v1/api/auth/test", headers=bad(1))  # remembered by this one
    assert len(fake_upstream.requests) == asked
    two.test_client().get("/v1/api/auth/test", headers=bad(1))  # another process asks once itself
    assert len(fake_upstream.requests) == asked + 1
    for application in (one, two):
        application.extensions["tiktok_following"].engine.dispose()


class Clock:
    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now


def test_watches_nobody_uses_are_deleted_with_their_history(client, svc, fake_upstream):
    clock = Clock()
    svc.clock = clock
    idle, used, subscribed = unique_handle("idle"), unique_handle("used"), unique_handle("sub")
    for handle in (idle, used, subscribed):
        fake_upstream.seed(handle, 3)
        assert trigger(client, handle).status_code == 200
    fake_upstream.follow(idle)
    assert trigger(client, idle).get_json()[0]["sequence"] == 1  # the idle watch has a journal too
    client.post("/v1/zapier/hooks", json={"handle": subscribed, "targetUrl": "http://127.0.0.1:9/x"},
                headers=AUTH)
    clock.now += dt.timedelta(days=20)
    trigger(client, used)  # marks it used
    clock.now += dt.timedelta(days=11)
    with svc.sessions() as session:
        ids = dict(session.execute(select(Watch.handle, Watch.id)).all())
    assert retention.delete_idle_watches(svc, clock.now) == 1
    with svc.sessions() as session:
        handles = set(session.scalars(select(Watch.handle)))
        assert handles == {used, subscribed}
        assert session.scalar(select(func.count()).select_from(Event)) == 0
        # 3 known each for the two watches left, none of the idle one
        assert [len(known.all_of(session, ids[h])) for h in (used, subscribed)] == [3, 3]
        assert session.scalar(select(func.count()).select_from(KnownSegment)
                              .where(KnownSegment.watch_id == ids[idle])) == 0


def test_last_used_is_written_at_most_hourly(client, svc, fake_upstream):
    clock = Clock()
    svc.clock = clock
    handle = unique_handle()
    fake_upstream.seed(handle, 2)

    def last_used():
        with svc.sessions() as session:
            return session.scalar(select(Watch.last_used_at))

    trigger(client, handle)
    created = last_used()
    clock.now += dt.timedelta(minutes=59)
    trigger(client, handle)
    assert last_used() == created
    clock.now += dt.timedelta(minutes=2)
    trigger(client, handle)
    assert last_used() == clock.now


def test_the_worker_runs_retention(svc, client, fake_upstream):
    handle = unique_handle()
    fake_upstream.seed(handle, 2)
    trigger(client, handle)
    client.get("/v1/api/auth/test", headers=AUTH)
    assert count(svc, AuthCheck) == 1
    later = utcnow() + dt.timedelta(days=31)
    svc.clock = lambda: later
    worker = Worker(svc)
    try:
        worker._retention()
    finally:
        worker.close()
    assert count(svc, Watch) == 0 and count(svc, AuthCheck) == 0
