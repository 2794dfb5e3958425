"""The worker: refreshes watched handles that have subscriptions, and sends the outbox.

`python -m integration.worker` (Procfile `worker`) runs until SIGTERM/SIGINT, then
finishes what it started and exits 0. Any number of workers may run at once:

- A due watch is claimed by moving its `next_poll_at` one interval ahead in the claim
  statement itself, so no other worker takes it within the interval. A refresh is
  also guarded by the watch's lease (`integration.watches`), which expires if the
  worker dies, and its journal + outbox rows are committed in one transaction.
- A due delivery is claimed by setting `claimed_until` (WORKER_CLAIM_SECONDS, default
  60; the send timeout is min(15 s, half of it)). A worker killed mid-send loses the
  claim when it expires; another worker sends again with the same `webhook-id`
  (at-least-once). Outcomes are written in batches by the loop (see flush_outcomes).

Both claims are one `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT n)
RETURNING`: on PostgreSQL concurrent workers skip each other's rows; on SQLite the
statement runs under the write lock taken at BEGIN IMMEDIATE, so it is atomic too.

Upstream trouble while refreshing (UpstreamFailure.kind):
- unauthorized: the watch is paused (status 'paused', no next poll) with a reason its
  subscriptions show; subscribing again with a working key resumes it.
- no_credits: status 'backoff' (its subscriptions show 'paused' with the reason, so the
  user knows why nothing arrives), retried every max(interval, 1 h); the first
  successful refresh makes it 'active' again.
- rate_limited: stays active, next poll after max(interval, Retry-After).
- anything else (5xx, timeout, unreachable, malformed, 404): next poll one interval
  later, as claimed.

Environment (besides Settings): WORKER_CONCURRENCY (threads for refreshes, and as many
for sends; default 32), WORKER_IDLE_SECONDS (0.5), WORKER_CLAIM_SECONDS (60),
LEASE_SECONDS (watches.py, 300), WORKER_METRICS_PORT (serve /metrics), LOG_LEVEL.
Sizing (bench/bench_worker.py, upstream answering in 500 ms): a refresh holds a thread
for the upstream's answer, so one worker does about concurrency / 0.5 s refreshes per
second: 16 threads gave ~30/s, short of the 33.3/s that 10,000 watches every 5 minutes
need; the default of 32 gave ~55/s. Beyond that, add worker processes.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, exists, or_, select, update

from integration import retention, subscriptions, watches
from integration.db import transaction
from integration.delivery import Sender, next_attempt_delay, webhook_headers
from integration.errors import UpstreamFailure
from integration.models import Delivery, Event, Subscription, Watch, utcnow
from integration.observability import CREDITS_SPENT, WEBHOOK_DELIVERIES, configure_logging, log
from integration.platforms import Platform
from integration.services import Services
from integration.upstream import Meter

logger = logging.getLogger("worker")

CLAIMABLE = ("active", "backoff")   # 'paused' waits for the user to reconnect
NO_CREDITS_BACKOFF = 3600.0
SEND_TIMEOUT = 15.0
MAX_BATCH = 100
RETENTION_EVERY = 3600.0  # seconds between retention passes (integration.retention)
ROTATING = bool(os.environ.get("OLD_SECRET_KEYS"))  # a SECRET_KEY rotation is in progress (see security.py)

_table = Delivery.__table__
# One statement for every outcome (executemany); only a delivery still pending is changed.
_RECORD = (_table.update()
           .where(_table.c.id == bindparam("d_id"), _table.c.status == "pending")
           .values(status=bindparam("d_status"), attempts=bindparam("d_attempts"),
                   last_status=bindparam("d_last_status"), last_error=bindparam("d_last_error"),
                   next_attempt_at=bindparam("d_next"), delivered_at=bindparam("d_delivered_at"),
                   claimed_until=None))

REASONS = {
    "unauthorized": "DumplingAI refused the stored API key, so new follows are not being checked. "
                    "Reconnect with a valid key (subscribe again) to resume.",
    "undecryptable": "The stored API key can no longer be read (the service's secret changed). "
                     "Reconnect (subscribe again) to resume.",
    "no_credits": "Your DumplingAI account has no credits left, so new follows are not being checked. "
                  "Top up your credits; we check again every hour and resume by ourselves.",
}


@dataclass(frozen=True)
class Options:
    idle_seconds: float = 0.5     # how long an idle loop sleeps (a finished job wakes it earlier)
    claim_seconds: float = 60.0   # a delivery claim; must outlast one send

    @classmethod
    def from_env(cls) -> "Options":
        env = os.environ
        return cls(float(env.get("WORKER_IDLE_SECONDS") or cls.idle_seconds),
                   float(env.get("WORKER_CLAIM_SECONDS") or cls.claim_seconds))


class _Lane:
    """A thread pool that knows how many jobs it runs, so the loop claims only what it
    can start right away (a queued claim could expire before its job starts)."""

    def __init__(self, size: int, name: str, on_done):
        self.size = size
        self._pool = ThreadPoolExecutor(size, thread_name_prefix=name)
        self._busy = 0
        self._lock = threading.Lock()
        self._on_done = on_done

    def free(self) -> int:
        with self._lock:
            return self.size - self._busy

    def submit(self, fn, *args):
        with self._lock:
            self._busy += 1
        future = self._pool.submit(fn, *args)
        future.add_done_callback(self._done)
        return future

    def _done(self, future) -> None:
        with self._lock:
            self._busy -= 1
        if future.exception() is not None:  # jobs catch their errors; this is a bug
            logger.error("worker job crashed", exc_info=future.exception())
        self._on_done()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class Worker:
    def __init__(self, svc: Services, options: Options | None = None, clock=utcnow):
        self.svc = svc
        self.options = options or Options()
        self.clock = clock  # naive UTC now(); tests move it forward instead of sleeping
        size = max(1, svc.settings.worker_concurrency)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.refreshes = _Lane(size, "refresh", self._refresh_done)
        self.sends = _Lane(size, "deliver", self._wake.set)
        # When the loop next looks for due work, per kind (monotonic): after finding less than
        # it could take, not before the idle time, so busy sends do not re-run the watch claim.
        self._look = {"refresh": 0.0, "deliver": 0.0}
        # One pooled sender for the life of the process; never slower than a claim allows.
        self.sender = Sender(allow_private=svc.settings.allow_private_webhook_targets,
                             timeout=min(SEND_TIMEOUT, self.options.claim_seconds / 2), pool_size=size)
        self.stats = {"refreshed": 0, "refresh_failed": 0, "delivered": 0, "retry": 0, "failed": 0, "gone": 0}
        self._stats_lock = threading.Lock()
        self._outcomes: queue.SimpleQueue = queue.SimpleQueue()  # holds at most the sends in flight
        self._retention_at = 0.0  # monotonic time of the next retention pass

    # ------------------------------------------------------------ loop

    def run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before claiming: a job ending from now on wakes the wait below
            try:
                self.flush_outcomes()
                self._retention()
                claimed = self._step("refresh", self.refreshes, self.refresh_due)
                claimed += self._step("deliver", self.sends, self.deliver_due)
            except Exception:  # noqa: BLE001 - e.g. the database restarting: keep going, slowly
                logger.exception("worker loop failed; retrying in 5 s")
                self._stop.wait(5)
                continue
            if claimed == 0:
                # Nothing claimable (or no free thread): sleep until a job ends or it is time to look again.
                self._wake.wait(max(0.0, min(self._look.values()) - time.monotonic()) or self.options.idle_seconds)

    def _retention(self) -> None:
        """Idle watches and expired auth checks go, about hourly (h4: keep this call at merge)."""
        if time.monotonic() < self._retention_at:
            return
        self._retention_at = time.monotonic() + RETENTION_EVERY
        retention.delete_idle_watches(self.svc, self.clock())
        retention.delete_expired_auth_checks(self.svc, self.clock())

    def _step(self, kind: str, lane: _Lane, claim) -> int:
        now = time.monotonic()
        if now < self._look[kind]:
            return 0
        free = min(lane.free(), MAX_BATCH)
        claimed = claim(wait=False)
        if claimed < free:  # all that is due was taken: look again after the idle time
            self._look[kind] = now + self.options.idle_seconds
        return claimed

    def _refresh_done(self) -> None:
        self._look["deliver"] = 0.0  # the refresh may have written deliveries: send them now
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run_once(self) -> int:
        """Claim and finish everything due now (tests): refreshes first, then their deliveries."""
        return self.refresh_due() + self.deliver_due()

    def close(self) -> None:
        self.refreshes.shutdown()
        self.sends.shutdown()
        while self.flush_outcomes():
            pass
        self.sender.close()

    def _count(self, key: str) -> None:
        with self._stats_lock:
            self.stats[key] += 1

    # ------------------------------------------------------------ refreshes

    def refresh_due(self, wait: bool = True) -> int:
        claimed = self._claim_watches(min(self.refreshes.free(), MAX_BATCH))
        futures = [self.refreshes.submit(self._refresh, *row) for row in claimed]
        if wait:
            for future in futures:
                future.result()
        return len(claimed)

    def _claim_watches(self, limit: int) -> list[tuple[int, str, Platform, bool]]:
        if limit <= 0:
            return []
        now = self.clock()
        has_subscription = exists().where(Subscription.watch_id == Watch.id)
        due = (select(Watch.id)
               .where(Watch.next_poll_at <= now, Watch.status.in_(CLAIMABLE), Watch.api_key_enc.is_not(None),
                      has_subscription)
               .order_by(Watch.next_poll_at).limit(limit)
               .with_for_update(skip_locked=True, of=Watch))
        interval = dt.timedelta(seconds=self.svc.settings.poll_interval_seconds)
        with transaction(self.svc.sessions) as session:
            rows = session.execute(
                update(Watch).where(Watch.id.in_(due.scalar_subquery()))
                .values(next_poll_at=now + interval)
                .returning(Watch.id, Watch.api_key_enc, Watch.status, Watch.status_reason)
                .execution_options(synchronize_session=False)).all()
            if not rows:
                return []
            # requestSource follows the platform the user subscribed from (the oldest one if mixed).
            platforms: dict[int, Platform] = {}
            for watch_id, platform in session.execute(
                    select(Subscription.watch_id, Subscription.platform)
                    .where(Subscription.watch_id.in_([r[0] for r in rows]))
                    .order_by(Subscription.created_at)):
                platforms.setdefault(watch_id, Platform(platform))
        return [(watch_id, key_enc, platforms.get(watch_id, Platform.API), status == "active" and reason is None)
                for watch_id, key_enc, status, reason in rows]

    def _refresh(self, watch_id: int, key_enc: str, platform: Platform, was_clean: bool) -> None:
        api_key = self.svc.vault.decrypt(key_enc)
        if api_key is None:
            self._set_watch(watch_id, key_enc, status="paused", status_reason=REASONS["undecryptable"],
                            next_poll_at=None)
            return
        meter = Meter()
        try:
            # wait_seconds=0: if another process holds the lease it is refreshing right now,
            # and its commit writes the outbox for our subscriptions too.
            result = watches.ensure_fresh(self.svc, watch_id, api_key, platform, meter, window=0, wait_seconds=0)
        except UpstreamFailure as failure:
            self._count("refresh_failed")
            self._upstream_trouble(watch_id, key_enc, failure)
            return
        except Exception:  # noqa: BLE001 - one broken watch must not stop the others
            self._count("refresh_failed")
            logger.exception("refresh failed", extra={"fields": {"watch_id": watch_id}})
            return
        finally:
            if meter.credits:
                CREDITS_SPENT.labels(platform.value).inc(meter.credits)
        if result.refreshed:
            self._count("refreshed")
            if not was_clean:  # back to normal after trouble (skipped otherwise: one write less per refresh)
                self._set_watch(watch_id, key_enc, status="active", status_reason=None)
            if ROTATING:  # re-encrypt the stored key under the newest SECRET_KEY
                self._set_watch(watch_id, key_enc, api_key_enc=self.svc.vault.reencrypt(key_enc))
            log(logger, logging.DEBUG, "watch refreshed", watch_id=watch_id, new_events=result.new_events)

    def _upstream_trouble(self, watch_id: int, key_enc: str, failure: UpstreamFailure) -> None:
        now = self.clock()
        interval = float(self.svc.settings.poll_interval_seconds)
        log(logger, logging.WARNING, "refresh failed upstream", watch_id=watch_id, kind=failure.kind,
            upstream_status=failure.upstream_status)
        if failure.kind == "unauthorized":
            self._set_watch(watch_id, key_enc, status="paused", status_reason=REASONS["unauthorized"],
                            next_poll_at=None)
        elif failure.kind == "no_credits":
            self._set_watch(watch_id, key_enc, status="backoff", status_reason=REASONS["no_credits"],
                            next_poll_at=now + dt.timedelta(seconds=max(interval, NO_CREDITS_BACKOFF)))
        elif failure.kind == "rate_limited":
            wait = max(interval, failure.retry_after or 0.0)
            self._set_watch(watch_id, key_enc, next_poll_at=now + dt.timedelta(seconds=wait))
        # Anything else: the claim already moved next_poll_at one interval ahead.

    def _set_watch(self, watch_id: int, key_enc: str, **values) -> None:
        # Only if the key is still the one we used: a user who reconnected meanwhile wins.
        with transaction(self.svc.sessions) as session:
            session.execute(update(Watch).where(Watch.id == watch_id, Watch.api_key_enc == key_enc)
                            .values(**values).execution_options(synchronize_session=False))

    # ------------------------------------------------------------ deliveries

    def deliver_due(self, wait: bool = True) -> int:
        self.flush_outcomes()
        jobs = self._claim_deliveries(min(self.sends.free(), MAX_BATCH))
        futures = [self.sends.submit(self._send, *job) for job in jobs]
        if wait:
            for future in futures:
                future.result()
            self.flush_outcomes()
        return len(jobs)

    def _claim_deliveries(self, limit: int) -> list[tuple]:
        if limit <= 0:
            return []
        now = self.clock()
        due = (select(Delivery.id)
               .where(Delivery.status == "pending", Delivery.next_attempt_at <= now,
                      or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now))
               .order_by(Delivery.next_attempt_at).limit(limit)
               .with_for_update(skip_locked=True))
        with transaction(self.svc.sessions) as session:
            ids = session.scalars(
                update(Delivery).where(Delivery.id.in_(due.scalar_subquery()))
                .values(claimed_until=now + dt.timedelta(seconds=self.options.claim_seconds))
                .returning(Delivery.id).execution_options(synchronize_session=False)).all()
            if not ids:
                return []
            rows = session.execute(
                select(Delivery.id, Delivery.attempts, Subscription.id, Subscription.target_url,
                       Subscription.secret_enc, Watch.handle, Event)
                .join(Subscription, Subscription.id == Delivery.subscription_id)
                .join(Event, Event.id == Delivery.event_id)
                .join(Watch, Watch.id == Event.watch_id)
                .where(Delivery.id.in_(ids))).all()
        # The body is the trigger item of the same event, compact JSON.
        return [(d_id, attempts, sub_id, url, secret_enc,
                 json.dumps(watches.event_item(handle, event), separators=(",", ":")).encode())
                for d_id, attempts, sub_id, url, secret_enc, handle, event in rows]

    def _send(self, delivery_id: str, attempts: int, sub_id: str, url: str, secret_enc: str, body: bytes) -> None:
        secret = self.svc.vault.decrypt(secret_enc)
        if secret is None:
            self._record(delivery_id, "failed", attempts, None, "the signing secret can no longer be read")
            return
        # Same webhook-id (the delivery id) on every attempt, so receivers can dedupe.
        result = self.sender.send(url, body, webhook_headers(secret, delivery_id, int(time.time()), body))
        if result.ok:
            self._record(delivery_id, "delivered", attempts + 1, result.status, None)
        elif result.gone:
            self._gone(sub_id)
        else:
            error = result.error or f"HTTP {result.status}"
            delay = next_attempt_delay(attempts + 1, result.retry_after)
            if delay is None:
                self._record(delivery_id, "failed", attempts + 1, result.status, error)
            else:
                self._record(delivery_id, "retry", attempts + 1, result.status, error, delay)

    def _record(self, delivery_id: str, outcome: str, attempts: int, status: int | None, error: str | None,
                delay: float | None = None) -> None:
        """Queue the outcome; flush_outcomes() writes it (well before the claim expires)."""
        now = self.clock()
        self._outcomes.put({
            "d_id": delivery_id, "d_attempts": attempts, "d_last_status": status, "d_last_error": error,
            "d_status": "pending" if outcome == "retry" else outcome,
            "d_next": now + dt.timedelta(seconds=delay) if outcome == "retry" else now,
            "d_delivered_at": now if outcome == "delivered" else None,
        })
        WEBHOOK_DELIVERIES.labels(outcome).inc()
        self._count(outcome)
        if outcome != "delivered":
            log(logger, logging.INFO, "delivery not accepted", delivery_id=delivery_id, outcome=outcome,
                attempts=attempts, last_status=status, error=error)

    def flush_outcomes(self) -> int:
        """Write the queued outcomes in one transaction: one write per send made sends wait
        on each other for the database (SQLite's single writer, PostgreSQL's commit).
        A worker killed before this loses only the outcome: the send is repeated, same webhook-id."""
        batch = []
        while len(batch) < 1000:
            try:
                batch.append(self._outcomes.get_nowait())
            except queue.Empty:
                break
        if batch:
            with transaction(self.svc.sessions) as session:
                session.connection().execute(_RECORD, batch)
        return len(batch)

    def _gone(self, sub_id: str) -> None:
        """410 Gone: the receiver (e.g. a Zap turned off) unsubscribed. Deleting the
        subscription drops its deliveries (ON DELETE CASCADE), as a DELETE /hooks/{id} would."""
        with transaction(self.svc.sessions) as session:
            watch_id = session.scalar(select(Subscription.watch_id).where(Subscription.id == sub_id))
            session.execute(delete(Subscription).where(Subscription.id == sub_id)
                            .execution_options(synchronize_session=False))
            if watch_id is not None:
                subscriptions.release_watch_if_unused(session, watch_id)
        WEBHOOK_DELIVERIES.labels("gone").inc()
        self._count("gone")
        log(logger, logging.INFO, "receiver answered 410 Gone; subscription deleted", subscription_id=sub_id)


def main() -> int:
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    from integration.config import Settings

    settings = Settings.from_env()
    svc = Services.build(settings)
    worker = Worker(svc, Options.from_env())
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    if os.environ.get("WORKER_METRICS_PORT"):
        from prometheus_client import start_http_server
        start_http_server(int(os.environ["WORKER_METRICS_PORT"]))
    log(logger, logging.INFO, "worker started", pid=os.getpid(), concurrency=settings.worker_concurrency,
        poll_interval=settings.poll_interval_seconds)
    worker.run()
    worker.close()  # waits for in-flight refreshes and sends
    log(logger, logging.INFO, "worker stopped", pid=os.getpid(), **worker.stats)
    svc.client.close()
    svc.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
