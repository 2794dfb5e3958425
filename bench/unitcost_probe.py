"""One side of bench/bench_unitcost.py: measures the code of the tree given as --root (the
working tree, or the baseline commit unpacked into a temporary folder) and prints JSON.

Runs in its own process so the two trees never share imported modules. Everything is
served in-process (Flask's test client, the worker's own methods) so CPU is counted with
`time.thread_time` (the trigger call: one thread does all of it) or `time.process_time`
(the worker: its refresh lane is a thread pool); the fake upstream is another process, so
its CPU is not ours. The machine is shared: compare the two columns of one run.

    python bench/unitcost_probe.py --root DIR --database URL --fake URL
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
import uuid


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--fake", required=True)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--watches", type=int, default=200)
    return parser.parse_args()


class Counters:
    """Statements and transactions, counted by SQLAlchemy's engine events."""

    def __init__(self, engine):
        from sqlalchemy import event

        self.statements = self.transactions = 0
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "begin", self._begin)

    def _statement(self, *_args):
        self.statements += 1

    def _begin(self, *_args):
        self.transactions += 1

    def snapshot(self) -> tuple[int, int]:
        return self.statements, self.transactions


def control(fake: str, path: str, body: dict):
    import requests

    response = requests.post(f"{fake}/_fake/{path}", json=body, timeout=10)
    response.raise_for_status()
    return response.json()


def make_app(args, **overrides):
    from app import create_app

    settings = dict(database_url=args.database, dumpling_base_url=args.fake, refresh_window_seconds=0,
                    allow_private_webhook_targets=True, upstream_total_seconds=10.0, upstream_read_timeout=5.0)
    return create_app({**settings, **overrides})


def close(app) -> None:
    svc = app.extensions["tiktok_following"]
    svc.client.close()
    svc.engine.dispose()


def trigger_cost(args, window: int, items: int) -> dict:
    """CPU, statements and transactions of one polling-trigger call answering `items` items:
    from the journal (`window` long, the watch fresh) or through a refresh (`window` 0: the
    upstream is asked and its page is all known accounts)."""
    handle = f"u{uuid.uuid4().hex[:10]}"
    body = {"handle": handle, "limit": items}
    control(args.fake, f"handles/{handle}/seed", {"n": 30})
    setup = make_app(args)
    call(setup.test_client(), body)  # the baseline
    for _ in range(items):
        control(args.fake, f"handles/{handle}/follow", {})
    call(setup.test_client(), body)  # one refresh journals them all (PAGE_CAP pages of 30)
    close(setup)
    app = make_app(args, refresh_window_seconds=window)
    client = app.test_client()
    assert len(call(client, body).get_json()) == items
    for _ in range(20):
        call(client, body)
    counters = Counters(app.extensions["tiktok_following"].engine)
    cpu, statements, transactions = [], [], []
    for _ in range(args.calls):
        before = counters.snapshot()
        started = time.thread_time()
        call(client, body)
        cpu.append((time.thread_time() - started) * 1000)
        after = counters.snapshot()
        statements.append(after[0] - before[0])
        transactions.append(after[1] - before[1])
    close(app)
    return {"cpu_ms": statistics.median(cpu), "statements": statistics.median(statements),
            "transactions": statistics.median(transactions)}


HEADERS = {"Authorization": "Bearer bench-key"}


def call(client, body: dict):
    response = client.post("/v1/api/triggers/new-following", json=body, headers=HEADERS)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def refresh_cost(args) -> dict:
    """The worker's CPU per refresh: `watches` subscribed watches made due at once, refreshed
    by `Worker.refresh_due` (claim + refresh lane + schedule), process CPU divided by count."""
    from sqlalchemy import update

    from integration.models import Watch
    from integration.worker import Worker

    app = make_app(args, worker_concurrency=32, max_subscriptions_per_key=args.watches)
    svc = app.extensions["tiktok_following"]
    client = app.test_client()
    tag = uuid.uuid4().hex[:6]
    for i in range(args.watches):
        handle = f"w{tag}{i}"
        control(args.fake, f"handles/{handle}/seed", {"n": 30})
        response = client.post("/v1/api/hooks", headers=HEADERS,
                               json={"handle": handle, "targetUrl": f"http://127.0.0.1:9/{handle}"})
        assert response.status_code in (200, 201), response.get_data(as_text=True)
    worker = Worker(svc)
    counters = Counters(svc.engine)
    rounds = []
    for _ in range(3):
        with svc.sessions.begin() as session:
            session.execute(update(Watch).values(next_poll_at=svc.clock() - dt.timedelta(seconds=1)))
        before = counters.snapshot()
        started = time.process_time()
        done = 0
        while True:
            n = worker.refresh_due()
            if not n:
                break
            done += n
        cpu = time.process_time() - started
        after = counters.snapshot()
        assert done == args.watches, done
        rounds.append((cpu * 1000 / done, (after[0] - before[0]) / done, (after[1] - before[1]) / done))
    worker.close()
    close(app)
    best = min(rounds)
    return {"cpu_ms": best[0], "statements": best[1], "transactions": best[2]}


def main():
    args = parse()
    sys.path.insert(0, args.root)
    import logging

    from integration.migrate import upgrade

    upgrade(args.database)  # this tree's own migrations

    results = {}
    for items in (30, 100):
        results[f"trigger_journal_{items}"] = trigger_cost(args, 3600, items)
        results[f"trigger_refresh_{items}"] = trigger_cost(args, 0, items)
    logging.disable(logging.CRITICAL)  # the worker logs each refresh at debug only, but failures at warning
    results["worker_refresh"] = refresh_cost(args)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
