"""The daily budget under real concurrency: several gunicorn processes, many threads, one
database (SQLite or PostgreSQL), callers racing on the last credits of the budget.

Each upstream call first reserves a credit (a conditional UPDATE), so the credits spent
never pass the budget: overshoot <= the requests in flight, and here it is 0."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import select

from integration.db import make_engine
from integration.models import CreditDay
from tests.conftest import AUTH, start_service, stop_service

BUDGET = 12
CALLERS = 48


def test_callers_racing_at_the_budget_edge_never_overshoot(database_url, fake_upstream, tmp_path):
    service = start_service(database_url, fake_upstream.url, workers=2, threads=24, log_path=tmp_path / "web.log")
    try:
        fake_upstream.seed("alice", 5)
        fake_upstream.delay = 0.2  # every caller is in flight while the others check the budget
        headers = {**AUTH, "X-Daily-Credit-Budget": str(BUDGET)}

        def call(_):
            return requests.post(service.url + "/v1/api/following", json={"handle": "alice"}, headers=headers,
                                 timeout=30)

        with ThreadPoolExecutor(CALLERS) as pool:
            answers = list(pool.map(call, range(CALLERS)))
        statuses = sorted(a.status_code for a in answers)
        assert set(statuses) == {200, 402}, statuses
        assert all(a.json()["code"] == "daily_budget_reached" for a in answers if a.status_code == 402)
        spent = fake_upstream.credits_spent()
        assert spent <= BUDGET  # the overshoot: spent - BUDGET, at most the requests in flight; here none
        assert statuses.count(200) == spent
        assert spent == BUDGET  # and no credit of the budget is wasted
        engine = make_engine(database_url)
        try:
            with engine.connect() as conn:
                credits, reserved = conn.execute(select(CreditDay.credits, CreditDay.reserved)).one()
        finally:
            engine.dispose()
        assert (credits, reserved) == (spent, 0)  # exact, and every reservation was settled
        usage = requests.get(service.url + "/v1/api/usage", headers=headers, timeout=10).json()
        assert usage["creditsToday"] == spent and usage["budgetLeft"] == BUDGET - spent
    finally:
        stop_service(service)


def test_two_web_processes_and_two_workers_racing_on_the_last_credits(database_url, fake_upstream, tmp_path):
    """Watches with a stored budget refreshed by two worker processes while two web processes
    serve callers of the same key: the day's credits end at the budget, never above it."""
    from sqlalchemy import update

    from integration.models import Watch, utcnow
    from tests.conftest import start_worker, stop_worker

    budget, handles = 16, [f"race{i}" for i in range(10)]
    service = start_service(database_url, fake_upstream.url, workers=2, threads=16, log_path=tmp_path / "web.log")
    workers = []
    try:
        headers = {**AUTH, "X-Daily-Credit-Budget": str(budget)}
        for handle in handles:  # 10 baselines: 10 of the 16 credits
            fake_upstream.seed(handle, 3)
            resp = requests.post(service.url + "/v1/api/hooks", headers=headers, timeout=30,
                                 json={"handle": handle, "targetUrl": "http://127.0.0.1:9/hook", "checkEvery": 1})
            assert resp.status_code == 201, resp.text
        assert fake_upstream.credits_spent() == 10
        engine = make_engine(database_url)
        with engine.begin() as conn:  # every watch due now: 10 worker refreshes wanted, 6 credits left
            conn.execute(update(Watch).values(next_poll_at=utcnow()))
        fake_upstream.delay = 0.1
        workers = [start_worker(database_url, fake_upstream.url, tmp_path / f"worker{i}.log") for i in range(2)]
        with ThreadPoolExecutor(16) as pool:  # and 16 web callers at the same time
            answers = list(pool.map(lambda _: requests.post(service.url + "/v1/api/following", headers=headers,
                                                            json={"handle": "race0"}, timeout=30), range(16)))
        assert {a.status_code for a in answers} <= {200, 402}
        # Every watch was either refreshed or pushed to the reset (the worker's answer to a spent budget).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                pending = conn.execute(select(Watch.id).where(Watch.next_poll_at <= utcnow())).all()
            if not pending:
                break
            time.sleep(0.1)
        for process in workers:
            stop_worker(process)
        with engine.connect() as conn:
            credits, reserved = conn.execute(select(CreditDay.credits, CreditDay.reserved)).one()
        engine.dispose()
        spent = fake_upstream.credits_spent()
        assert spent == budget and (credits, reserved) == (spent, 0)
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
        stop_service(service)
