"""The worker loop: refreshes watched handles that have subscriptions, and sends the outbox.

`python -m integration.worker` (Procfile `worker`) runs until SIGTERM/SIGINT, then
finishes what it started and exits 0. Any number of workers may run at once; how they
share the work without doubles is in `claims.py`, what a failure does in `policies.py`.

Two thread lanes (WORKER_CONCURRENCY threads each): refreshes, and sends. The loop claims
only what a lane can start at once (a queued claim could expire before its job starts).
A send has a wall-clock deadline of min(15 s, WORKER_CLAIM_SECONDS / 2) whatever the
receiver does (`deadline.py`), and `sendgate.py` caps the sends in flight per owner and
per target host and the request rate per host: a delivery it refuses is given back
unsent (not an attempt). With the round-robin claim, an owner's slow receivers delay
another owner's deliveries by at most one claim cycle.

Sizing (bench/bench_worker.py, upstream answering in 500 ms): a refresh holds a thread
for the upstream's answer, so one worker does at most concurrency / 0.5 s refreshes per
second, and its CPU per refresh (4-6 ms on SQLite, 6-9 ms on PostgreSQL, one core: the
GIL) caps it below that: 128 threads gave 133/s on SQLite and 74/s on PostgreSQL on a
loaded 2-core machine. Threads, not asyncio: a refresh spends its CPU in SQLAlchemy, the
database driver and the upstream client, which an event loop would not remove, and the
same code serves the web process. Beyond that, add worker processes.
"""
from __future__ import annotations

import datetime as dt
import faulthandler
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from integration import claims, crowds, policies, retention, sweeps, watches
from integration.delivery import Sender, webhook_headers
from integration.errors import UpstreamFailure
from integration.ledger import Account, BudgetReached
from integration.jobs import DeliveryJob, DeliveryOutcome, Outcome, RefreshJob, WatchStatus
from integration.observability import CREDITS_SPENT, WEBHOOK_DELIVERIES, configure_logging, log
from integration.sendgate import SendGate
from integration.services import Services
from integration.upstream import Meter

logger = logging.getLogger("worker")

SEND_TIMEOUT = 15.0
MAX_BATCH = 100
WORKER_DB_POOL = 32  # the worker's database connections (DB_POOL_SIZE overrides): see main()
RETENTION_EVERY = 3600.0  # seconds between retention passes (integration.retention)


class _Lane:
    """A thread pool that knows how many jobs it runs, so the loop claims only what it
    can start right away."""

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


class _Wakeup:
    """What the loop sleeps on, set by a job ending and by stop(), which the SIGTERM handler calls.

    Not a threading.Event: a Python signal handler runs in the main thread between any two
    bytecodes, also while that thread is inside Event.wait() or Event.set() holding the Event's
    lock, which is not reentrant: an Event.set() in the handler then waits for ever on a lock its
    own thread holds (a worker that never stopped after SIGTERM; two SIGTERMs close together, as
    tests/test_worker_processes.py sends, widen the window). SimpleQueue.put takes no Python-level
    lock and is documented as reentrant (the queue module's docs)."""

    def __init__(self):
        self._calls: queue.SimpleQueue = queue.SimpleQueue()

    def set(self) -> None:
        self._calls.put(None)

    def clear(self) -> None:
        # What is there now, not until empty: a set() meanwhile (a job ending, a stream of
        # signals) cannot keep it draining; it only makes the next wait() return at once.
        for _ in range(self._calls.qsize()):
            self._calls.get_nowait()  # the loop's thread is the only one that takes: never empty

    def wait(self, timeout: float) -> None:
        """Until set (since the last clear) or timeout seconds, what comes first."""
        try:
            self._calls.get(timeout=timeout)
        except queue.Empty:
            pass


class Worker:
    def __init__(self, svc: Services):
        self.svc = svc
        settings = svc.settings
        self.idle_seconds = settings.worker_idle_seconds
        self.claim_seconds = settings.worker_claim_seconds
        size = max(1, settings.worker_concurrency)
        self._wake = _Wakeup()
        self._stopping = False  # a plain flag: set from the signal handler (see _Wakeup)
        self.refreshes = _Lane(size, "refresh", self._refresh_done)
        self.sends = _Lane(size, "deliver", self._send_done)
        # When the loop next looks for due work, per kind (monotonic): after finding less than
        # it could take, not before the idle time, so busy sends do not re-run the watch claim.
        self._look = {"refresh": 0.0, "sweep": 0.0, "deliver": 0.0}
        self._refreshes_done = 0  # a refresh ending while the delivery claim runs must not be overlooked
        # Free refresh lanes a claim waits for (a batch), up to an eighth of the lanes.
        self._refill = max(1, min(MAX_BATCH, size // 8))
        self._held_back = False   # the last delivery claim left due deliveries for the caps: a send ending frees one
        # One pooled sender for the life of the process; never slower than a claim allows.
        self.sender = Sender(allow_private=settings.allow_private_webhook_targets,
                             timeout=min(SEND_TIMEOUT, self.claim_seconds / 2), pool_size=size)
        self.gate = SendGate(per_owner=settings.max_sends_per_owner, per_host=settings.max_sends_per_host,
                             host_rps=settings.target_host_rps)
        self.rotating = bool(settings.old_secret_keys)  # re-encrypt stored keys under the newest SECRET_KEY
        self.stats = {"refreshed": 0, "refresh_failed": 0, "delivered": 0, "retry": 0, "failed": 0, "gone": 0,
                      "deferred": 0}
        self._stats_lock = threading.Lock()
        self._outcomes: queue.SimpleQueue = queue.SimpleQueue()  # holds at most the sends in flight
        self._retention_at = 0.0  # monotonic time of the next retention pass

    # ------------------------------------------------------------ loop

    def run(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before claiming: a job ending from now on wakes the wait below
            try:
                self.flush_outcomes()
                self._retention()
                claimed = self._step("refresh", self.refreshes, self.refresh_due)
                claimed += self._step("sweep", self.refreshes, self.sweep_due)  # unfollows (h8)
                claimed += self._step("deliver", self.sends, self.deliver_due)
            except Exception:  # noqa: BLE001 - e.g. the database restarting: keep going, slowly
                logger.exception("worker loop failed; retrying in 5 s")
                self._pause(5)
                continue
            if claimed == 0 and not self._stopping:  # stop() may have come before the clear() above
                # Nothing claimable (or no free thread): sleep until a job ends or it is time to look again.
                self._wake.wait(max(0.0, min(self._look.values()) - time.monotonic()) or self.idle_seconds)

    def _pause(self, seconds: float) -> None:
        """Sleep `seconds` however many jobs end meanwhile; stop() ends it."""
        until = time.monotonic() + seconds
        while not self._stopping and (left := until - time.monotonic()) > 0:
            self._wake.wait(left)

    def _retention(self) -> None:
        """Idle watches and expired auth checks go, about hourly (h4: keep this call at merge)."""
        if time.monotonic() < self._retention_at:
            return
        self._retention_at = time.monotonic() + RETENTION_EVERY
        retention.delete_idle_watches(self.svc, self.svc.clock())
        retention.delete_idle_crowds(self.svc, self.svc.clock())
        retention.delete_expired_auth_checks(self.svc, self.svc.clock())

    def _step(self, kind: str, lane: _Lane, claim) -> int:
        now = time.monotonic()
        if now < self._look[kind]:
            return 0
        free = min(lane.free(), MAX_BATCH)
        if kind == "refresh" and free < self._refill:
            return 0  # _refresh_done wakes the loop when enough lanes are free
        refreshes_done = self._refreshes_done
        started = claim(wait=False)
        # All that is due (and allowed) was taken: look again after the idle time, unless a
        # refresh ended meanwhile (its deliveries may have been committed after the claim).
        if started < free and (kind != "deliver" or refreshes_done == self._refreshes_done):
            self._look[kind] = now + self.idle_seconds
        return started

    def _refresh_done(self) -> None:
        # A lane is free: claim again once enough are, so a claim takes a batch (each claim is
        # a write transaction; one per finished refresh was most of SQLite's write lock).
        if self.refreshes.free() >= self._refill:
            self._wake.set()

    def _journal_written(self) -> None:
        """A refresh (or a crowd evaluation) journaled events: their deliveries, if any, now."""
        self._refreshes_done += 1
        self._look["deliver"] = 0.0
        self._wake.set()

    def _send_done(self) -> None:
        if self._held_back:
            self._look["deliver"] = 0.0
        self._wake.set()

    def stop(self) -> None:
        """Safe in a signal handler, also one that interrupts stop() itself (see _Wakeup)."""
        self._stopping = True
        self._wake.set()

    def run_once(self) -> int:
        """Claim and finish everything due now (tests): refreshes first, then their deliveries."""
        return self.refresh_due() + self.sweep_due() + self.deliver_due()

    def close(self) -> None:
        self.refreshes.shutdown()
        self.sends.shutdown()
        while self.flush_outcomes():
            pass
        self.sender.close()

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    # ------------------------------------------------------------ refreshes

    def refresh_due(self, wait: bool = True) -> int:
        jobs = claims.claim_watches(self.svc, self.svc.clock(), min(self.refreshes.free(), MAX_BATCH))
        futures = [self.refreshes.submit(self._refresh, job) for job in jobs]
        if wait:
            for future in futures:
                future.result()
        return len(jobs)

    def _refresh(self, job: RefreshJob) -> None:
        if job.lease is None:
            # A trigger call's refresh held the lease at the claim: that refresh is this poll
            # (its commit writes the outbox for our subscriptions too); the claim's retry stands.
            return
        try:
            api_key = self.svc.vault.decrypt(job.key_enc)
            # With a checkEvery, a refresh a trigger call made inside the interval counts ("whoever
            # asks"): the worker then only moves its next poll. Without one, as before: every poll.
            interval = claims.job_interval(self.svc, job, self.svc.clock())
            fresh = interval is not None and watches.refreshed_since(job.last_refresh_at, self.svc.clock() - interval)
            if api_key is None or fresh:
                watches.release(self.svc, job.watch_id, job.lease.token)
        except BaseException:
            watches.release(self.svc, job.watch_id, job.lease.token)  # the lease the claim took
            raise
        if api_key is None:
            self._change_watch(job, policies.paused("undecryptable").values())
            return
        meter = Meter(account=Account.for_owner(self.svc, job.owner_hash, job.daily_budget))
        try:
            if fresh:
                result = watches.RefreshResult(refreshed=False, fresh=True)
            else:
                result = watches.refresh_leased(self.svc, job.watch_id, job.lease, api_key, job.platform, meter,
                                                schedule=claims.poll_interval(self.svc))
        except BudgetReached as reached:
            # The key's budget is spent for today: check again when it resets.
            self._change_watch(job, {"next_poll_at": reached.resets_at})
            log(logger, logging.INFO, "daily budget reached; next check at reset", watch_id=job.watch_id)
            return
        except UpstreamFailure as failure:
            self._count("refresh_failed")
            log(logger, logging.WARNING, "refresh failed upstream", watch_id=job.watch_id, kind=failure.kind,
                upstream_status=failure.upstream_status)
            change = policies.after_upstream_failure(failure.kind, failure.retry_after, now=self.svc.clock(),
                                                     interval=float(self.svc.settings.poll_interval_seconds))
            if change is not None:
                self._change_watch(job, change.values())
            return
        except Exception:  # noqa: BLE001 - one broken watch must not stop the others
            self._count("refresh_failed")
            logger.exception("refresh failed", extra={"fields": {"watch_id": job.watch_id}})
            return
        finally:
            meter.close()
            if meter.credits:
                CREDITS_SPENT.labels(job.platform.value).inc(meter.credits)
        if (result.refreshed or result.fresh) and not result.scheduled:
            # else another process holds the refresh: the claim's retry stands. A refresh that
            # committed has scheduled the next poll in its own transaction.
            claims.schedule_next(self.svc, job.watch_id, self.svc.clock(), refreshed=result.refreshed)
        if result.refreshed:
            self._count("refreshed")
            if not job.was_clean:  # back to normal after trouble (skipped otherwise: one write less per refresh)
                self._change_watch(job, {"status": WatchStatus.ACTIVE, "status_reason": None})
            if self.rotating:
                self._change_watch(job, {"api_key_enc": self.svc.vault.reencrypt(job.key_enc)})
            log(logger, logging.DEBUG, "watch refreshed", watch_id=job.watch_id, new_events=result.new_events)
        if (result.refreshed or result.fresh) and job.crowds:
            self._evaluate_crowds(job.watch_id)
        if result.new_events or result.unfollows or job.crowds:
            self._journal_written()

    def _evaluate_crowds(self, watch_id: int) -> None:
        """"Followed by many" subscriptions on the watch: their crowds see the new follows.
        Also after a refresh without new follows: an evaluation a crash skipped is caught up."""
        try:
            crowds.evaluate_for_watch(self.svc, watch_id)
        except Exception:  # noqa: BLE001 - the marks did not move: the next refresh evaluates again
            logger.exception("crowd evaluation failed", extra={"fields": {"watch_id": watch_id}})

    def sweep_due(self, wait: bool = True) -> int:
        """Unfollow sweeps due for watches with `unfollowed` subscriptions (integration/sweeps.py)."""
        jobs = sweeps.due_for_worker(self.svc, self.svc.clock(), min(self.refreshes.free(), MAX_BATCH))
        futures = [self.refreshes.submit(self._sweep, *job) for job in jobs]
        if wait:
            for future in futures:
                future.result()
        return len(jobs)

    def _sweep(self, watch_id: int, key_enc: str, platform) -> None:
        api_key = self.svc.vault.decrypt(key_enc)
        if api_key is None:
            return  # the refresh of the same watch pauses it (undecryptable)
        meter = Meter()
        try:
            sweeps.run_if_due(self.svc, watch_id, api_key, platform, meter)
        except Exception:  # noqa: BLE001 - one broken watch must not stop the others
            logger.exception("unfollow sweep failed", extra={"fields": {"watch_id": watch_id}})
        finally:
            if meter.credits:
                CREDITS_SPENT.labels(platform.value).inc(meter.credits)

    def _change_watch(self, job: RefreshJob, values: dict) -> None:
        claims.change_watch(self.svc, job.watch_id, job.key_enc, **values)

    # ------------------------------------------------------------ deliveries

    def deliver_due(self, wait: bool = True) -> int:
        """Claim due deliveries fairly and start those the gate allows; give back the rest."""
        self.flush_outcomes()
        now = self.svc.clock()
        skip = self.gate.busy_owners()
        jobs = claims.claim_deliveries(self.svc, now, min(self.sends.free(), MAX_BATCH),
                                       claim_seconds=self.claim_seconds, per_owner=self.gate.per_owner,
                                       skip_owners=skip)
        futures, given_back = [], {}
        for job in jobs:
            wait_seconds = self.gate.acquire(job.owner_hash, job.host)
            if wait_seconds == 0.0:
                futures.append(self.sends.submit(self._send, job))
            else:  # at a cap (-1: at the next claim) or over the host's rate (then not before it allows)
                given_back[job.delivery_id] = (
                    None if wait_seconds < 0 else now + dt.timedelta(seconds=wait_seconds))
        claims.release_deliveries(self.svc, given_back)
        self._count("deferred", len(given_back))
        per_owner = Counter(job.owner_hash for job in jobs)
        self._held_back = bool(skip or given_back) or any(n >= self.gate.per_owner for n in per_owner.values())
        if wait:
            for future in futures:
                future.result()
            self.flush_outcomes()
        return len(futures)

    def _send(self, job: DeliveryJob) -> None:
        try:
            secret = self.svc.vault.decrypt(job.secret_enc)
            if secret is None:
                self._record(policies.unreadable_secret(job, now=self.svc.clock()))
                return
            # Same webhook-id (the delivery id) on every attempt, so receivers can dedupe.
            result = self.sender.send(job.target_url, job.body,
                                      webhook_headers(secret, job.delivery_id, int(time.time()), job.body))
        finally:
            self.gate.release(job.owner_hash, job.host)
        outcome = policies.after_send(job, result, now=self.svc.clock())
        if outcome.remove_subscription:
            claims.remove_subscription(self.svc, job.subscription_id)
            log(logger, logging.INFO, "receiver answered 410 Gone; subscription deleted",
                subscription_id=job.subscription_id)
        self._record(outcome)

    def _record(self, outcome: DeliveryOutcome) -> None:
        """Queue the outcome; flush_outcomes() writes it (well before the claim expires)."""
        self._outcomes.put(outcome)
        WEBHOOK_DELIVERIES.labels(outcome.outcome.value).inc()
        self._count(outcome.outcome.value)
        if outcome.outcome is not Outcome.DELIVERED and not outcome.remove_subscription:
            log(logger, logging.INFO, "delivery not accepted", delivery_id=outcome.delivery_id,
                outcome=outcome.outcome.value, attempts=outcome.attempts, last_status=outcome.last_status,
                error=outcome.last_error)

    def flush_outcomes(self) -> int:
        """Write the queued outcomes in one transaction. A worker killed before this loses
        only the outcome: the send is repeated, same webhook-id."""
        batch = []
        while len(batch) < 1000:
            try:
                batch.append(self._outcomes.get_nowait())
            except queue.Empty:
                break
        if batch:
            claims.record_outcomes(self.svc, batch)
        return len(batch)


def serve_metrics(host: str, port: int) -> None:
    from prometheus_client import start_http_server

    start_http_server(port, addr=host)


def build_services(settings) -> Services:
    """The worker's services. Both lanes (refreshes, sends) plus the loop and the lease keeper
    use the upstream and the database, but a lane's thread holds a database connection only
    for its short transactions, never across an upstream call or a send: at 300 refreshes/s
    about one is busy at a time, so the pool is not one per thread (2 x 256 + 2 would be far
    past PostgreSQL's max_connections)."""
    return Services.build(settings, threads=min(2 * max(1, settings.worker_concurrency) + 2, WORKER_DB_POOL))


def main() -> int:
    from integration.config import Settings

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    svc = build_services(settings)
    worker = Worker(svc)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    # SIGUSR1 writes every thread's stack to stderr: what a worker that does not stop is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if settings.worker_metrics_port:
        serve_metrics(settings.worker_metrics_host, settings.worker_metrics_port)
    log(logger, logging.INFO, "worker started", pid=os.getpid(), concurrency=settings.worker_concurrency,
        poll_interval=settings.poll_interval_seconds, metrics_port=settings.worker_metrics_port,
        metrics_host=settings.worker_metrics_host if settings.worker_metrics_port else None)
    worker.run()
    worker.close()  # waits for in-flight refreshes and sends
    # Stopped: a later SIGTERM or SIGINT has nothing left to stop. Ignored, not left to our
    # handler: CPython gives a signal handled in Python back its default action (ending the
    # process, exit -15) while the interpreter finalizes, and a supervisor may signal again.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)
    log(logger, logging.INFO, "worker stopped", pid=os.getpid(), **worker.stats)
    svc.client.close()
    svc.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
