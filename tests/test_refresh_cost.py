"""Issue 14 item 3: what one worker refresh costs the database, counted (not timed), and the
rules its shortcuts rest on. The CPU figures are in bench/bench_unitcost.py and
bench/bench_worker.py (side by side with the baseline)."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import select, update

from integration import claims, known, sweeps, watches
from integration.detection import NeedVerify
from integration.models import CreditDay, Watch, WatchDay
from integration.worker import Worker
from tests.conftest import AUTH, Clock, unique_handle
from tests.receiver import Receiver
from tests.test_unit_cost import Recorder

INTERVAL = 300  # POLL_INTERVAL_SECONDS of the test app


@pytest.fixture
def env(app, client, fake_upstream):
    clock = Clock()
    shared = app.extensions["tiktok_following"]
    svc = dataclasses.replace(shared, clock=clock)
    worker = Worker(svc)
    receiver = Receiver()
    yield client, svc, worker, clock, fake_upstream, receiver
    worker.close()
    receiver.close()


def subscribed(client, fake, receiver, seeded: int = 5) -> tuple[str, int]:
    handle = unique_handle()
    fake.seed(handle, seeded)
    response = client.post("/v1/zapier/hooks", json={"handle": handle, "targetUrl": receiver.url}, headers=AUTH)
    assert response.status_code == 201, response.get_json()
    with client.application.extensions["tiktok_following"].reads() as session:
        return handle, session.scalar(select(Watch.id).where(Watch.handle == handle))


def row(svc, model, **keys):
    with svc.reads() as session:
        return session.scalar(select(model).filter_by(**keys))


def test_a_refresh_with_nothing_new_is_two_transactions_and_schedules_in_its_commit(env):
    client, svc, worker, clock, fake, receiver = env
    handle, watch_id = subscribed(client, fake, receiver)
    clock.offset += dt.timedelta(seconds=INTERVAL + 1)
    spent = fake.credits_spent()
    owner_refreshes = sum(r.refreshes for r in _credit_days(svc))
    owner_credits = sum(r.credits for r in _credit_days(svc))
    recorder = Recorder(svc.engine)

    assert worker.refresh_due() == 1

    assert fake.credits_spent() == spent + 1
    # The claim of due watches (which took the lease and read the state), the commit (with
    # the known-ids lookup and the credit): nothing more (9 transactions before issue 14).
    assert recorder.transactions == 2
    # The known ids are counted by the claim and read once by the lookup (a small watch: its
    # segments whole, one statement), not again by the commit (all were known); no new
    # follow: the subscriptions' filters are not read.
    assert sum("known_segments" in s for s in recorder.statements) == 2
    assert not any("subscriptions.filters" in s for s in recorder.statements)
    watch = row(svc, Watch, id=watch_id)
    assert watch.lease_token is None and watch.last_refresh_at is not None
    # The next poll, one interval on, set by the commit (not a transaction of its own).
    assert abs(watch.next_poll_at - watch.last_refresh_at - dt.timedelta(seconds=INTERVAL)) < dt.timedelta(seconds=1)
    # The ledger lines, written in the same commit: the refresh and its credit.
    assert sum(r.refreshes for r in _credit_days(svc)) == owner_refreshes + 1
    assert sum(r.credits for r in _credit_days(svc)) == owner_credits + 1
    day = row(svc, WatchDay, watch_id=watch_id, day=svc.clock().date())
    assert day.refreshes >= 1 and day.credits >= 1


def test_a_commit_with_nothing_new_is_its_locked_read_and_its_writes(env):
    """The commit of a refresh that found nothing new: the watch row locked and, in the same
    statement, its known ids (a small watch: read whole); then the row's write and the ledger
    lines, on PostgreSQL in one statement (data-modifying WITHs). Nothing else: no
    known-segment write (no id is new), top_ids written back as they were (not re-packed)."""
    client, svc, worker, clock, fake, receiver = env
    handle, watch_id = subscribed(client, fake, receiver)
    top_before = row(svc, Watch, id=watch_id).top_ids
    clock.offset += dt.timedelta(seconds=INTERVAL + 1)
    jobs = claims.claim_watches(svc, svc.clock(), 10)
    assert [job.watch_id for job in jobs] == [watch_id]
    committed = Recorder(svc.engine)  # after the claim: the refresh's own statements

    worker._refresh(jobs[0])

    statements = [s for s in committed.statements if not s.startswith("BEGIN")]
    assert "FROM watches LEFT OUTER JOIN known_segments" in statements[0]  # the lock and the lookup
    if svc.engine.dialect.name == "postgresql":
        assert len(statements) == 2
        assert "UPDATE watches" in statements[1] and "INSERT INTO watch_days" in statements[1]
    else:
        assert [s.split(" SET ")[0].split(" (")[0] for s in statements[1:]] == [
            "UPDATE watches", "INSERT INTO credit_days", "INSERT INTO watch_days"]
    watch = row(svc, Watch, id=watch_id)
    assert watch.lease_token is None and watch.top_ids == top_before


def test_a_refresh_with_new_follows_journals_and_delivers_them_in_order(env):
    client, svc, worker, clock, fake, receiver = env
    handle, watch_id = subscribed(client, fake, receiver)
    followed = [fake.follow(handle) for _ in range(3)]  # oldest first
    clock.offset += dt.timedelta(seconds=INTERVAL + 1)
    assert worker.run_once() >= 1
    items = client.post("/v1/zapier/triggers/new-following", json={"handle": handle}, headers=AUTH).get_json()
    # Newest first (then the baseline's samples), each once: numbered oldest first.
    assert [i["id"] for i in items][:3] == [str(a["user"]["id"]) for a in reversed(followed)]
    assert len(receiver.received) == 3 and len(set(receiver.ids())) == 3
    assert row(svc, Watch, id=watch_id).last_sequence == 3


def test_an_id_a_sweep_forgets_during_a_refresh_is_remembered_by_its_commit(env, monkeypatch):
    """The commit skips writing ids its lookups found known, unless the journal moved since
    the claim: a sweep's unfollows (which forget ids) add to it. A refresh of two pages looks
    up its first page in a transaction of its own, so a sweep can forget an id between that
    lookup and the commit; the refresh saw the account on its page and still remembers it."""
    client, svc, worker, clock, fake, receiver = env
    handle, watch_id = subscribed(client, fake, receiver, seeded=3)
    with svc.reads() as session:
        ids = sorted(known.all_of(session, watch_id))
    gone = ids[0]
    real_step, fetch = watches.step, svc.client.fetch_page
    forced, swept = [], []

    def step_asking_twice(state, known_ids, pages, verifies=(), **kwargs):
        if pages and not forced:  # a second request after the first page (its lookup committed)
            forced.append(known_ids.copy())
            return NeedVerify(0)
        return real_step(state, known_ids, pages, (), **kwargs)

    def fetch_then_sweep(*args, **kwargs):
        page = fetch(*args, **kwargs)
        if forced and not swept:  # between the first page's lookup and the commit
            with svc.sessions.begin() as session:  # what a sweep's commit does, under the watch's lock
                watch = session.get(Watch, watch_id, with_for_update=True)
                sweeps.write_unfollows(session, watch, [{"id": gone}], svc.clock())
            swept.append(True)
        return page

    monkeypatch.setattr(watches, "step", step_asking_twice)
    monkeypatch.setattr(svc.client, "fetch_page", fetch_then_sweep)
    clock.offset += dt.timedelta(seconds=INTERVAL + 1)
    assert worker.refresh_due() == 1
    assert swept and gone in forced[0]  # the first lookup found it known, then the sweep forgot it
    with svc.reads() as session:
        assert gone in known.all_of(session, watch_id)


def _credit_days(svc):
    with svc.reads() as session:
        return session.scalars(select(CreditDay)).all()


def test_a_watch_a_trigger_call_is_refreshing_is_claimed_without_its_lease(env):
    """The claim takes the lease of free watches only: one whose lease a trigger call's
    refresh holds is not refreshed again (that refresh is this poll); its next poll moves on."""
    client, svc, worker, clock, fake, receiver = env
    handle, watch_id = subscribed(client, fake, receiver)
    clock.offset += dt.timedelta(seconds=INTERVAL + 1)
    held_until = svc.clock() + dt.timedelta(seconds=30)
    with svc.sessions.begin() as session:
        session.execute(update(Watch).where(Watch.id == watch_id).values(lease_token="a-trigger", lease_until=held_until))
    spent = fake.credits_spent()
    assert worker.refresh_due() == 1
    assert fake.credits_spent() == spent  # no second refresh
    watch = row(svc, Watch, id=watch_id)
    assert (watch.lease_token, watch.lease_until) == ("a-trigger", held_until)
    assert watch.next_poll_at > svc.clock() + dt.timedelta(seconds=INTERVAL - 5)
    assert not svc.leases._held  # nothing of ours to renew
