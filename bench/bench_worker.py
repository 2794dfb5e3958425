"""Worker throughput and memory (a script, not a test).

    .venv/bin/python bench/bench_worker.py [--watches 3000] [--deliveries 100000] [--baseline COMMIT]
    BENCH_DATABASE_URL=postgresql+psycopg://... to use PostgreSQL (default: a fresh SQLite file)

The worker runs as the real `python -m integration.worker` subprocess; this script
holds the fake upstream (answering in 500 ms) and a webhook receiver, fills the
database, and watches the results. Measures:
1. refreshes per second at a few WORKER_CONCURRENCY values vs the ceiling
   concurrency / 0.5 s, and whether 10,000 watches every 5 minutes fit (33.3/s);
2. latency from detection (the event's detectedAt) to receipt, p50/p99;
3. deliveries per second, and the worker's RSS after 1,000 and after N deliveries.
"""
from __future__ import annotations

import argparse
import hashlib
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# BENCH_TREE: the tree whose worker (and models, migrations, fake) this run measures; `--baseline`
# points it at the baseline commit's tree and runs this same script there.
ROOT = Path(os.environ.get("BENCH_TREE") or Path(__file__).resolve().parent.parent)
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select, text, update  # noqa: E402

from fakeupstream import FakeDumpling  # noqa: E402
from fakeupstream.accounts import make_account  # noqa: E402
from integration.accounts import flatten  # noqa: E402
from integration.config import Settings  # noqa: E402
from integration.delivery import new_secret  # noqa: E402
from integration.migrate import upgrade  # noqa: E402
from integration.models import Delivery, Event, Subscription, Watch, utcnow  # noqa: E402
from integration.services import Services  # noqa: E402
from tests.receiver import Answer, Receiver  # noqa: E402

KEY = "bench-key"
UPSTREAM_DELAY = 0.5
NEEDED_PER_SECOND = 10_000 / 300


class LatencyReceiver:
    """Counts deliveries and the detection-to-receipt latency of each (bounded: a float each)."""

    def __init__(self):
        self.latencies: list[float] = []
        self.receiver = Receiver(default=Answer(204), keep=False, on_post=self._arrived)
        self.url = self.receiver.url

    @property
    def count(self) -> int:
        return self.receiver.started

    def _arrived(self, request) -> None:
        detected = dt.datetime.fromisoformat(json.loads(request.body)["detectedAt"].replace("Z", "+00:00"))
        self.latencies.append(request.at - detected.timestamp())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# Every delivery here goes to one owner's receiver on one host: with the shipped per-owner and
# per-host limits this would measure the limits (e.g. TARGET_HOST_RPS deliveries/s), not the
# worker. They are lifted unless --shipped-limits; bench_fairness.py measures them.
LIFTED_LIMITS = {"MAX_SENDS_PER_OWNER": "1000", "MAX_SENDS_PER_HOST": "1000", "TARGET_HOST_RPS": "0"}
LIMITS: dict = dict(LIFTED_LIMITS)


def start_worker(database_url: str, fake_url: str, concurrency: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "DUMPLING_BASE_URL": fake_url,
           "ALLOW_PRIVATE_WEBHOOK_TARGETS": "1", "WORKER_CONCURRENCY": str(concurrency),
           "POLL_INTERVAL_SECONDS": "300", "WORKER_IDLE_SECONDS": "0.2", "LOG_LEVEL": "WARNING", **LIMITS}
    process = subprocess.Popen([sys.executable, "-m", "integration.worker"], cwd=ROOT, env=env,
                               stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    time.sleep(1.5)  # imports + first claim
    return process


def stop_worker(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(60)


def wait_until(predicate, timeout: float, every: float = 0.1) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError("bench step did not finish in time")
        time.sleep(every)
    return time.monotonic() - started


def reset_database(url: str) -> None:
    svc_engine = Services.build(Settings.from_env(database_url=url)).engine
    if url.startswith("postgresql"):
        with svc_engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    svc_engine.dispose()
    upgrade(url)


def add_watches(svc: Services, fake: FakeDumpling, n: int, target: str) -> None:
    owner, key_enc = svc.owner(KEY), svc.vault.encrypt(KEY)
    secret_enc = svc.vault.encrypt(new_secret())
    with svc.sessions.begin() as session:
        for i in range(n):
            handle = f"bench_{i}"
            fake.seed(handle, 5)
            watch = Watch(owner_hash=owner, handle=handle, api_key_enc=key_enc, next_poll_at=None)
            session.add(watch)
            session.flush()
            session.add(Subscription(id=f"sub_{i:08d}", watch_id=watch.id, owner_hash=owner, platform="zapier",
                                     target_url=target, secret_enc=secret_enc,
                                     target_hash=hashlib.sha256(target.encode()).hexdigest()))


def make_all_due(svc: Services) -> dt.datetime:
    now = utcnow()
    with svc.sessions.begin() as session:
        session.execute(update(Watch).where(Watch.api_key_enc.is_not(None)).values(next_poll_at=now))
    return now


def refreshed_since(svc: Services, moment: dt.datetime) -> int:
    with svc.sessions() as session:
        return session.scalar(select(func.count()).select_from(Watch).where(Watch.last_refresh_at >= moment))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/PID/stat), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_refresh(svc, fake, url, watches: int, concurrency: int, log: Path) -> tuple[float, float]:
    """(refreshes per second, the worker process's CPU ms per refresh: claims, refreshes,
    its lease keeper and loop, excluding start-up)."""
    worker = start_worker(url, fake.url, concurrency, log)
    try:
        cpu = cpu_seconds(worker.pid)
        since = make_all_due(svc)
        elapsed = wait_until(lambda: refreshed_since(svc, since) >= watches, timeout=600)
        cpu = cpu_seconds(worker.pid) - cpu
    finally:
        stop_worker(worker)
    return watches / elapsed, cpu * 1000 / watches


def add_deliveries(svc: Services, first_event: int, n: int, subs: list[tuple[str, int]]) -> None:
    """n pending deliveries, due now, spread over the subscriptions (one event each)."""
    now = utcnow()
    for start in range(0, n, 5000):
        events, deliveries = [], []
        for k in range(start, min(n, start + 5000)):
            event_id = first_event + k
            sub_id, watch_id = subs[k % len(subs)]
            events.append(dict(id=event_id, watch_id=watch_id, sequence=event_id, account_id=str(event_id),
                               detected_at=now, payload=json.dumps(flatten(make_account(event_id)))))
            deliveries.append(dict(id=secrets.token_hex(12), subscription_id=sub_id, event_id=event_id,
                                   status="pending", attempts=0, next_attempt_at=now, created_at=now))
        with svc.sessions.begin() as session:
            session.execute(insert(Event), events)
            session.execute(insert(Delivery), deliveries)


def delivered(svc: Services) -> int:
    with svc.sessions() as session:
        return session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "delivered"))


def baseline_refreshes(commit: str, watches: int, concurrency: int) -> list[str]:
    """Part 1 measured on the baseline's tree (its worker, migrations and models) by this same
    script, on the same database (reset first), before this tree's run."""
    from harness import baseline_tree
    with baseline_tree(commit) as tree:
        env = {**os.environ, "BENCH_TREE": tree, "PYTHONPATH": tree}
        out = subprocess.run([sys.executable, __file__, "--refresh-only", "--baseline", "", "--watches", str(watches),
                              "--concurrency", str(concurrency)], env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode:
        return [f"   baseline {commit}: failed ({out.stderr.strip().splitlines()[-1:]})"]
    return [f"   baseline {commit}:{line}" for line in out.stdout.splitlines() if line.startswith("   ")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--watches", type=int, default=3000)  # ~10 s at 300/s: past the first waves
    parser.add_argument("--concurrency", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--baseline", default="e4e027f", help="measure part 1 on this commit first ('': not)")
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--refresh-only", action="store_true", help="only the refresh throughput (1.)")
    parser.add_argument("--shipped-limits", action="store_true",
                        help="keep MAX_SENDS_PER_OWNER/HOST and TARGET_HOST_RPS at their defaults")
    args = parser.parse_args()
    if args.shipped_limits:
        LIMITS.clear()
    baseline = baseline_refreshes(args.baseline, args.watches, max(args.concurrency)) if args.baseline else []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the finally blocks: stop our workers

    folder = Path(tempfile.mkdtemp(prefix="bench_worker_"))
    url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{folder / 'bench.db'}"
    log = folder / "worker.log"
    reset_database(url)
    svc = Services.build(Settings.from_env(database_url=url))
    fake = FakeDumpling().start()
    fake.add_key(KEY)
    receiver = LatencyReceiver()
    print(f"database: {url.split('@')[-1]}  worker log: {log}  limits: {LIMITS or 'shipped defaults'}")

    # 1. Refresh throughput with a slow upstream.
    add_watches(svc, fake, args.watches, receiver.url)
    fake.delay = UPSTREAM_DELAY
    print(f"\n1. refreshes/s, {args.watches} watches, upstream answering in {UPSTREAM_DELAY * 1000:.0f} ms")
    # Every watch's first refresh takes its baseline (remembers its accounts, stores samples):
    # one pass first, reported apart, so the figures below are the steady state (new follows
    # or none), which is what a deployment runs all day.
    rate, cpu_ms = bench_refresh(svc, fake, url, args.watches, max(args.concurrency), log)
    print(f"   baselines (first refresh of each watch), concurrency {max(args.concurrency)}: {rate:6.1f}/s; "
          f"worker CPU {cpu_ms:.2f} ms/refresh")
    for concurrency in args.concurrency:
        credits = fake.credits_spent()
        rate, cpu_ms = bench_refresh(svc, fake, url, args.watches, concurrency, log)
        ceiling = concurrency / UPSTREAM_DELAY
        fits = "fits" if rate >= NEEDED_PER_SECOND else "does NOT fit"
        print(f"   concurrency {concurrency:3d}: {rate:6.1f} refreshes/s (ceiling {ceiling:5.1f}/s, "
              f"{rate / ceiling:4.0%}); worker CPU {cpu_ms:.2f} ms/refresh; credits {fake.credits_spent() - credits}; "
              f"10,000 watches / 5 min (33.3/s) {fits}; 100,000 (333/s) {'fits' if rate >= 333 else 'does NOT fit'}")
    print("\n".join(baseline))
    if args.refresh_only:
        fake.stop()
        svc.engine.dispose()
        return

    # 2. Detection-to-receipt latency: every watch gets one new follow, all due at once.
    concurrency = max(args.concurrency)
    for i in range(args.watches):
        fake.follow(f"bench_{i}")
    worker = start_worker(url, fake.url, concurrency, log)
    try:
        make_all_due(svc)
        wait_until(lambda: receiver.count >= args.watches, timeout=600)
    finally:
        stop_worker(worker)
    lat = receiver.latencies
    print(f"\n2. detection -> receipt latency, {len(lat)} events from {args.watches} refreshes "
          f"(concurrency {concurrency}, upstream {UPSTREAM_DELAY * 1000:.0f} ms):")
    print(f"   p50 {percentile(lat, 50) * 1000:.0f} ms, p99 {percentile(lat, 99) * 1000:.0f} ms, "
          f"max {max(lat) * 1000:.0f} ms")

    # 3. Delivery throughput and memory: the worker alone against the receiver.
    with svc.sessions() as session:
        subs = [tuple(r) for r in session.execute(select(Subscription.id, Subscription.watch_id).limit(100))]
        first_event = (session.scalar(select(func.max(Event.id))) or 0) + 1
    base = delivered(svc)
    worker = start_worker(url, fake.url, 16, log)
    try:
        add_deliveries(svc, first_event, 1000, subs)
        t1 = wait_until(lambda: delivered(svc) - base >= 1000, timeout=600, every=0.05)
        rss_1k = rss_kib(worker.pid)
        rest = args.deliveries - 1000
        started = time.monotonic()
        add_deliveries(svc, first_event + 1000, rest, subs)
        wait_until(lambda: delivered(svc) - base >= args.deliveries, timeout=3600, every=0.5)
        t_rest = time.monotonic() - started
        rss_all = rss_kib(worker.pid)
    finally:
        stop_worker(worker)
    print("\n3. deliveries (concurrency 16, receiver on 127.0.0.1):")
    print(f"   first 1,000: {1000 / t1:6.0f}/s; next {rest:,}: {rest / t_rest:6.0f}/s (incl. inserting them)")
    print(f"   worker RSS after 1,000 deliveries: {rss_1k / 1024:.1f} MiB; after {args.deliveries:,}: "
          f"{rss_all / 1024:.1f} MiB ({(rss_all - rss_1k) / 1024:+.1f} MiB)")
    fake.stop()
    svc.engine.dispose()


if __name__ == "__main__":
    main()
