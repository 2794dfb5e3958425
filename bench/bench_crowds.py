""""Followed by many": what evaluating a crowd costs, and what a poll asks of the upstream.

1. Evaluation CPU (in process, SQLite: its work is in our process too). A 50-handle crowd
   (minHandles 3, withinDays 7) whose watches each hold 1,000 journal events (accounts
   drawn from 10,000, so many are shared; detected over the last 30 days). Measured with
   time.process_time(): making the crowd (marks, and the accounts already over the threshold),
   then polls that each bring 1 new follow per handle (50 new events), and a catch-up poll of
   20 per handle (1,000 new events, e.g. after the worker was down).
2. Upstream requests per poll: our service (gunicorn) against the fake upstream (its own
   process), POST /v1/zapier/triggers/followed-by-many with 50 handles, checkEvery unset
   and REFRESH_WINDOW_SECONDS 0 (every poll refreshes every handle): X-Credits-Used and the
   fake's request count.

    .venv/bin/python bench/bench_crowds.py
"""
from __future__ import annotations

import datetime as dt
import json
import random
import statistics
import time

import requests
from sqlalchemy import insert, update

from harness import API_KEY, FakeProcess, fresh_sqlite, percentile, service_env, start_service, stop_service
from integration import crowds
from integration.config import Settings
from integration.db import transaction
from integration.models import Event, Watch
from integration.services import Services

HANDLES, EVENTS_PER_WATCH, POOL, POLLS = 50, 1000, 10_000, 30
OWNER = "ab" * 32
NOW = dt.datetime(2026, 11, 26, 12, 0)


def account(i: int) -> str:
    return json.dumps({"id": str(i), "uniqueId": f"acct{i}", "nickname": f"Account {i}", "followerCount": i})


def seeded(svc: Services, rng: random.Random) -> dict[str, int]:
    with transaction(svc.sessions) as session:
        session.execute(insert(Watch), [{"owner_hash": OWNER, "handle": f"creator{i}", "last_sequence": EVENTS_PER_WATCH,
                                         "created_at": NOW - dt.timedelta(days=40), "top_ids": "[]", "baseline": "[]",
                                         "truncations": 0, "watermark_exclusive": True, "check_auto": False,
                                         "status": "active"} for i in range(HANDLES)])
    with svc.sessions() as session:
        ids = dict(session.execute(Watch.__table__.select().with_only_columns(Watch.handle, Watch.id)).all())
    with transaction(svc.sessions) as session:
        for watch_id in ids.values():
            rows = []
            for seq in range(1, EVENTS_PER_WATCH + 1):
                acct = rng.randrange(POOL)
                rows.append({"watch_id": watch_id, "sequence": seq, "account_id": str(acct), "event": "new_following",
                             "detected_at": NOW - dt.timedelta(days=30) + dt.timedelta(minutes=43 * seq),
                             "payload": account(acct)})
            session.execute(insert(Event), rows)
    return ids


def add_follows(svc: Services, ids: dict[str, int], per_watch: int, at: dt.datetime, rng: random.Random) -> None:
    with transaction(svc.sessions) as session:
        for watch_id in ids.values():
            head = session.get(Watch, watch_id).last_sequence
            rows = []
            for n in range(1, per_watch + 1):
                acct = rng.randrange(POOL)
                rows.append({"watch_id": watch_id, "sequence": head + n, "account_id": str(acct),
                             "event": "new_following", "detected_at": at, "payload": account(acct)})
            session.execute(insert(Event), rows)
            session.execute(update(Watch).where(Watch.id == watch_id).values(last_sequence=head + per_watch))


def cpu(fn) -> tuple[float, object]:
    start = time.process_time()
    result = fn()
    return (time.process_time() - start) * 1000, result


def evaluation() -> None:
    rng = random.Random(11)
    svc = Services.build(Settings.from_env(database_url=fresh_sqlite()))
    now = [NOW]
    svc.clock = lambda: now[0]
    ids = seeded(svc, rng)
    handles = sorted(ids)
    made_ms, crowd_id = cpu(lambda: crowds.open_crowd(svc, OWNER, ids, handles, 3, 7))
    print(f"making the crowd (50 x {EVENTS_PER_WATCH} journal events): {made_ms:.0f} ms CPU")
    per_poll, fired = [], 0
    for _ in range(POLLS):
        now[0] += dt.timedelta(minutes=15)
        add_follows(svc, ids, 1, now[0], rng)
        ms, written = cpu(lambda: crowds.evaluate(svc, crowd_id))
        per_poll.append(ms)
        fired += written
    print(f"evaluation, 50 new follows per poll ({POLLS} polls): median {statistics.median(per_poll):.1f} ms CPU, "
          f"p90 {percentile(per_poll, 90):.1f} ms; {fired} crossings")
    now[0] += dt.timedelta(hours=5)
    add_follows(svc, ids, 20, now[0], rng)
    ms, written = cpu(lambda: crowds.evaluate(svc, crowd_id))
    print(f"evaluation, catch-up of 1,000 new follows: {ms:.0f} ms CPU; {written} crossings")
    ms, _ = cpu(lambda: crowds.evaluate(svc, crowd_id))
    print(f"evaluation with nothing new: {ms:.2f} ms CPU")
    svc.engine.dispose()


def upstream_per_poll() -> None:
    fake = FakeProcess()
    handles = [f"creator{i}" for i in range(HANDLES)]
    for handle in handles:
        fake.control(f"handles/{handle}/seed", {"n": 30})
    service = start_service(fresh_sqlite(), fake.url, workers=1, threads=16, extra_env=service_env())
    try:
        credits, calls, latency = [], [], []
        for i in range(6):
            before = len(requests.get(fake.url + "/_fake/requests", timeout=10).json()) if i else 0
            started = time.perf_counter()
            response = requests.post(service.url + "/v1/zapier/triggers/followed-by-many",
                                     json={"handles": handles, "minHandles": 3}, timeout=120,
                                     headers={"Authorization": f"Bearer {API_KEY}"})
            latency.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
            credits.append(int(response.headers.get("X-Credits-Used", 0)))
            if i:
                calls.append(len(requests.get(fake.url + "/_fake/requests", timeout=10).json()) - before)
        print(f"50-handle poll: {credits[0]} credits for the baselines, then {statistics.median(credits[1:]):.0f} "
              f"credits and {statistics.median(calls):.0f} upstream requests per poll (upstream at 0 ms); "
              f"wall p50 {statistics.median(latency[1:]):.0f} ms")
    finally:
        stop_service(service)
        fake.stop()


if __name__ == "__main__":
    evaluation()
    upstream_per_poll()
