"""Coalescing across real processes: several gunicorn workers, one database (SQLite or
PostgreSQL), concurrent trigger calls over HTTP."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import AUTH, start_service, stop_service


@pytest.mark.parametrize("window", ["60", "0"])
def test_concurrent_calls_across_workers_cost_one_refresh_and_agree(database_url, fake_upstream, tmp_path, window):
    service = start_service(database_url, fake_upstream.url, workers=3, threads=16,
                            extra_env={"REFRESH_WINDOW_SECONDS": window}, log_path=tmp_path / "web.log")
    try:
        url = service.url + "/v1/make/triggers/new-following"
        fake_upstream.seed("alice", 10)
        assert requests.post(url, json={"handle": "alice"}, headers=AUTH, timeout=30).json() == []  # baseline
        new = [fake_upstream.follow("alice") for _ in range(4)]
        if window == "60":
            # Inside the window nothing is refreshed, however many calls: prove it, then expire it.
            calls = [requests.post(url, json={"handle": "alice"}, headers=AUTH, timeout=30) for _ in range(5)]
            assert all(c.json() == [] for c in calls) and fake_upstream.credits_spent() == 1
            from integration.db import make_engine
            from sqlalchemy import text
            engine = make_engine(database_url)
            with engine.begin() as conn:
                conn.execute(text("UPDATE watches SET last_refresh_at = NULL"))
            engine.dispose()
        fake_upstream.delay = 0.5  # a slow refresh: every caller arrives while it runs
        with ThreadPoolExecutor(24) as pool:
            answers = list(pool.map(lambda _: requests.post(url, json={"handle": "alice"}, headers=AUTH, timeout=30),
                                    range(24)))
        assert all(a.status_code == 200 for a in answers)
        expected = [e["user"]["id"] for e in reversed(new)]
        bodies = [[item["id"] for item in a.json()] for a in answers]
        assert all(body == expected for body in bodies), bodies
        assert sorted({tuple(i["sequence"] for i in a.json()) for a in answers}) == [(4, 3, 2, 1)]
        # Callers that arrived while the refresh ran shared it. With a 0 s window a caller that
        # arrived after it finished may refresh again, but those refreshes find nothing new.
        paid = sum(int(a.headers["X-Credits-Used"]) for a in answers)
        assert paid == fake_upstream.credits_spent() - 1
        assert paid == 1 if window == "60" else paid < 24
    finally:
        stop_service(service)


def test_a_web_process_killed_mid_refresh_does_not_stall_the_watch(database_url, fake_upstream, tmp_path):
    """kill -9 while a refresh waits on the upstream: its lease is no longer renewed, so
    another process takes the watch over within LEASE_SECONDS (default 10 s), instead of
    every caller waiting 25 s and answering nothing new until a 300 s lease expired."""
    import os
    import signal
    import threading
    import time
    from pathlib import Path

    env = {}
    first = start_service(database_url, fake_upstream.url, workers=1, threads=4, extra_env=env,
                          log_path=tmp_path / "first.log")
    url = "/v1/make/triggers/new-following"
    fake_upstream.seed("alice", 10)
    assert requests.post(first.url + url, json={"handle": "alice"}, headers=AUTH, timeout=30).json() == []
    new = [fake_upstream.follow("alice") for _ in range(3)]
    fake_upstream.add_fault(hang=6.0)  # the next upstream request hangs: the refresh holds its lease
    def doomed_call():  # its process is killed under it: the connection error is expected
        try:
            requests.post(first.url + url, json={"handle": "alice"}, headers=AUTH, timeout=30)
        except requests.RequestException:
            pass

    threading.Thread(target=doomed_call, daemon=True).start()
    time.sleep(1.0)  # the refresh is under way
    children = Path(f"/proc/{first.process.pid}/task/{first.process.pid}/children").read_text().split()
    for pid in [*children, str(first.process.pid)]:
        os.kill(int(pid), signal.SIGKILL)
    first.process.wait(10)
    second = start_service(database_url, fake_upstream.url, workers=1, threads=4, extra_env=env,
                           log_path=tmp_path / "second.log")
    try:
        started = time.monotonic()
        answer = requests.post(second.url + url, json={"handle": "alice"}, headers=AUTH, timeout=30)
        elapsed = time.monotonic() - started
        assert [i["id"] for i in answer.json()] == [e["user"]["id"] for e in reversed(new)]
        assert elapsed < 20, elapsed  # about LEASE_SECONDS (10 s), never WAIT_SECONDS' 25 s
    finally:
        stop_service(second)


def test_a_refresh_slower_than_its_lease_keeps_it(database_url, fake_upstream, tmp_path):
    """The lease is renewed while the refresh runs: a concurrent caller shares the slow
    refresh instead of taking it over and paying again."""
    service = start_service(database_url, fake_upstream.url, workers=2, threads=8, extra_env={"LEASE_SECONDS": "1"},
                            log_path=tmp_path / "web.log")
    try:
        url = service.url + "/v1/make/triggers/new-following"
        fake_upstream.seed("alice", 10)
        requests.post(url, json={"handle": "alice"}, headers=AUTH, timeout=30)
        fake_upstream.follow("alice")
        fake_upstream.delay = 2.5  # each upstream answer outlasts the 1 s lease
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: requests.post(url, json={"handle": "alice"}, headers=AUTH, timeout=30),
                                    range(4)))
        assert all(len(a.json()) == 1 for a in answers)
        assert sum(int(a.headers["X-Credits-Used"]) for a in answers) == 1
    finally:
        stop_service(service)
