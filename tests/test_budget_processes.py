"""The daily budget under real concurrency: several gunicorn processes, many threads, one
database (SQLite or PostgreSQL), callers racing on the last credits of the budget.

Each upstream call first reserves a credit (a conditional UPDATE), so the credits spent
never pass the budget: overshoot <= the requests in flight, and here it is 0."""
from __future__ import annotations

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
