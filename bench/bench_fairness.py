"""Delivery latency of one owner while another owner's receivers drip (a script, not a test).

    .venv/bin/python bench/bench_fairness.py [--rounds 40] [--follows 5]

The real `python -m integration.worker` subprocess (default settings: 32 threads per lane,
send deadline 15 s, MAX_SENDS_PER_OWNER 4) against the fake upstream and two receivers
on this machine: owner A's answers at once; owner B's 40 subscriptions point at one that
answers one byte every 0.5 s (about 20 s per answer, so every send of B ends at the deadline).
B's watch gets two new follows first (80 dripping deliveries: at 4 sends of 15 s at a time B
keeps its sends busy for the whole run); then each round A gets `--follows` new follows, its
watch is made due, and we wait for A's deliveries. Reported: A's detection-to-receipt
latency p50/p99/max, A alone vs with B's dripping targets (goal: p99 within 2x).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, update  # noqa: E402

from bench.bench_worker import percentile, reset_database, stop_worker, wait_until  # noqa: E402
from fakeupstream import FakeDumpling  # noqa: E402
from integration.config import Settings  # noqa: E402
from integration.delivery import new_secret  # noqa: E402
from integration.models import Subscription, Watch, utcnow  # noqa: E402
from integration.services import Services  # noqa: E402
from tests.receiver import Answer, Receiver  # noqa: E402

KEY_A, KEY_B = "bench-key-a", "bench-key-b"


def add_watch(svc: Services, fake: FakeDumpling, key: str, handle: str, targets: list[str]) -> None:
    fake.seed(handle, 3)
    owner = svc.owner(key)
    with svc.sessions.begin() as session:
        watch = Watch(owner_hash=owner, handle=handle, api_key_enc=svc.vault.encrypt(key), next_poll_at=None)
        session.add(watch)
        session.flush()
        for i, target in enumerate(targets):
            session.add(Subscription(id=f"sub_{handle}_{i:03d}", watch_id=watch.id, owner_hash=owner,
                                     platform="zapier", target_url=target,
                                     secret_enc=svc.vault.encrypt(new_secret())))


def make_due(svc: Services, handles: list[str]) -> None:
    with svc.sessions.begin() as session:
        session.execute(update(Watch).where(Watch.handle.in_(handles)).values(next_poll_at=utcnow()))


def baselined(svc: Services) -> int:
    with svc.sessions() as session:
        return session.scalar(select(func.count()).select_from(Watch).where(Watch.last_refresh_at.is_not(None)))


def start_worker(url: str, fake_url: str, log: Path):
    import subprocess

    env = {**os.environ, "DATABASE_URL": url, "DUMPLING_BASE_URL": fake_url, "ALLOW_PRIVATE_WEBHOOK_TARGETS": "1",
           "POLL_INTERVAL_SECONDS": "300", "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "integration.worker"], cwd=ROOT, env=env,
                               stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    time.sleep(1.5)  # imports + first claim
    return process


def scenario(with_b: bool, rounds: int, follows: int, log: Path) -> tuple[list[float], int]:
    folder = Path(tempfile.mkdtemp(prefix="bench_fairness_"))
    url = f"sqlite:///{folder / 'bench.db'}"
    reset_database(url)
    svc = Services.build(Settings.from_env(database_url=url))
    fake = FakeDumpling().start()
    fake.add_key(KEY_A)
    fake.add_key(KEY_B)
    latencies: list[float] = []

    def arrived(request) -> None:
        detected = dt.datetime.fromisoformat(json.loads(request.body)["detectedAt"].replace("Z", "+00:00"))
        latencies.append(request.at - detected.timestamp())

    fine = Receiver(default=Answer(204), keep=False, on_post=arrived)
    drip = Receiver(default=Answer(drip=0.5), keep=False)
    add_watch(svc, fake, KEY_A, "owner_a", [fine.url_for(host="localhost")])
    handles = ["owner_a"]
    if with_b:
        add_watch(svc, fake, KEY_B, "owner_b", [f"{drip.url}?n={i}" for i in range(40)])
        handles.append("owner_b")
    worker = start_worker(url, fake.url, log)
    try:
        make_due(svc, handles)  # the first refresh takes the baseline: nothing to deliver yet
        wait_until(lambda: baselined(svc) == len(handles), timeout=60)
        if with_b:  # 80 dripping deliveries: at 4 sends of 15 s at a time, B stays busy for the whole run
            fake.follow("owner_b")
            fake.follow("owner_b")
            make_due(svc, ["owner_b"])
            wait_until(lambda: drip.started >= 4, timeout=60)
        for r in range(rounds):
            for _ in range(follows):
                fake.follow("owner_a")
            make_due(svc, ["owner_a"])
            wait_until(lambda: fine.started >= (r + 1) * follows, timeout=120, every=0.02)
            time.sleep(0.25)
    finally:
        stop_worker(worker)
        fine.close()
        drip.close()
        fake.stop()
        svc.engine.dispose()
    return latencies, drip.started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--follows", type=int, default=5)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    log = Path(tempfile.mkdtemp(prefix="bench_fairness_log_")) / "worker.log"
    print(f"worker log: {log}")
    results = {}
    for with_b in (False, True):
        started = time.monotonic()
        lat, b_sends = scenario(with_b, args.rounds, args.follows, log)
        name = "A with B's 40 dripping targets" if with_b else "A alone"
        results[with_b] = percentile(lat, 99)
        print(f"{name:32s}: {len(lat)} deliveries in {time.monotonic() - started:5.1f} s, "
              f"p50 {percentile(lat, 50) * 1000:6.0f} ms, p99 {percentile(lat, 99) * 1000:6.0f} ms, "
              f"max {max(lat) * 1000:6.0f} ms" + (f"; B's sends started: {b_sends}" if with_b else ""))
    ratio = results[True] / results[False]
    print(f"p99 ratio: {ratio:.2f}x ({'within' if ratio <= 2 else 'NOT within'} the 2x goal)")


if __name__ == "__main__":
    main()
