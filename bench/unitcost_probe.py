"""One side of bench/bench_unitcost.py: measures the code of the tree given as --root (the
working tree, or the baseline commit unpacked into a temporary folder) and prints JSON.

Runs in its own process so the two trees never share imported modules. Everything is
served in-process (the WSGI application called with a prepared environ, the worker's own
methods) so CPU is counted with `time.thread_time` (the trigger call: one thread does all of
it) or `time.process_time` (the worker: its refresh lane is a thread pool); the fake upstream
is another process, so its CPU is not ours. Statements and transactions are counted on runs
of their own (the counters are engine events, which cost CPU). The machine is shared:
compare the two columns of one run.

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
    upstream is asked and its page is all known accounts).

    `cpu_ms` is the service's own work: the WSGI application called with a prepared environ,
    from the environ to the answer's last byte (served, gunicorn builds the environ). Neither
    the test client's request building (~0.17 ms a call) nor the statement counters' engine
    events are in it: statements and transactions are counted on calls of their own.
    `client_cpu_ms` is the same call through Flask's test client, as earlier rounds measured."""
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
    served = wsgi_call(app, body)
    cpu = [cpu_ms(served) for _ in range(args.calls)]
    client_cpu = [cpu_ms(lambda: call(client, body)) for _ in range(args.calls)]
    counters = Counters(app.extensions["tiktok_following"].engine)
    statements, transactions = [], []
    for _ in range(min(args.calls, 20)):
        before = counters.snapshot()
        served()
        after = counters.snapshot()
        statements.append(after[0] - before[0])
        transactions.append(after[1] - before[1])
    close(app)
    return {"cpu_ms": statistics.median(cpu), "client_cpu_ms": statistics.median(client_cpu),
            "statements": statistics.median(statements), "transactions": statistics.median(transactions)}


def cpu_ms(fn) -> float:
    started = time.thread_time()
    fn()
    return (time.thread_time() - started) * 1000


HEADERS = {"Authorization": "Bearer bench-key"}
TRIGGER = "/v1/api/triggers/new-following"


def call(client, body: dict):
    response = client.post(TRIGGER, json=body, headers=HEADERS)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def wsgi_call(app, body: dict):
    """A call of the WSGI application with an environ prepared once (a fresh copy and input
    stream each time), as a server makes it; asserts the answer is a 200."""
    import io

    import orjson
    from werkzeug.test import EnvironBuilder

    raw = orjson.dumps(body)
    environ = EnvironBuilder(path=TRIGGER, method="POST", data=raw, content_type="application/json",
                             headers=HEADERS).get_environ()

    def served():
        status = []
        answer = app.wsgi_app({**environ, "wsgi.input": io.BytesIO(raw)},
                              lambda line, _headers, _exc=None: status.append(line))
        try:
            b"".join(answer)
        finally:
            getattr(answer, "close", lambda: None)()
        assert status[0].startswith("200"), status
    return served


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

    def one_round() -> tuple[float, int]:
        with svc.sessions.begin() as session:
            session.execute(update(Watch).values(next_poll_at=svc.clock() - dt.timedelta(seconds=1)))
        started = time.process_time()
        done = 0
        while True:
            n = worker.refresh_due()
            if not n:
                break
            done += n
        assert done == args.watches, done
        return (time.process_time() - started) * 1000 / done, done

    cpu = min(one_round()[0] for _ in range(3))
    counters = Counters(svc.engine)  # after the timed rounds: its engine events cost CPU of their own
    _, done = one_round()
    statements, transactions = counters.snapshot()
    worker.close()
    close(app)
    return {"cpu_ms": cpu, "statements": statements / done, "transactions": transactions / done}


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
