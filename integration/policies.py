"""The worker's rules, as pure functions: what an upstream failure does to a watch, and
what a receiver's answer does to a delivery. No database, no clock: `now` is passed in.

Upstream trouble while refreshing (UpstreamFailure.kind):
- unauthorized, not_found, list_hidden: the watch is paused (no next poll) with a reason its
  subscriptions show; subscribing again resumes it. A missing list does not come back by
  retrying, and polling it every interval would only spend the user's credits.
- no_credits: status backoff (its subscriptions show 'paused' with the reason), retried
  every max(interval, 1 h); the first successful refresh makes it active again.
- rate_limited: stays active, next poll after max(interval, Retry-After).
- anything else (5xx, timeout, unreachable, malformed): the claim already moved the next
  poll one interval ahead; nothing to tell the user.
"""
from __future__ import annotations

import datetime as dt
import random

from integration.delivery import SendResult, next_attempt_delay
from integration.errors import FailureKind
from integration.jobs import DeliveryJob, DeliveryOutcome, Outcome, WatchChange, WatchStatus

NO_CREDITS_BACKOFF = 3600.0

REASONS = {
    FailureKind.UNAUTHORIZED: "DumplingAI refused the stored API key, so new follows are not being checked. "
                              "Reconnect with a valid key (subscribe again) to resume.",
    FailureKind.NO_CREDITS: "Your DumplingAI account has no credits left, so new follows are not being checked. "
                            "Top up your credits; we check again every hour and resume by ourselves.",
    FailureKind.NOT_FOUND: "TikTok no longer shows a following list for this handle: most likely the handle "
                           "was renamed or banned, or the account made its following list private. "
                           "Checking is paused; subscribe again (with the new handle if it changed) to resume.",
    FailureKind.LIST_HIDDEN: "This account keeps its following list private, so new follows cannot be seen. "
                             "Checking is paused; subscribe again once the list is public to resume.",
    "undecryptable": "The stored API key can no longer be read (the service's secret changed). "
                     "Reconnect (subscribe again) to resume.",
}


def after_upstream_failure(kind: str, retry_after: float | None, *, now: dt.datetime,
                           interval: float) -> WatchChange | None:
    """The change to a watch whose refresh failed with `kind`; None: keep the claim's next poll."""
    match kind:
        case FailureKind.UNAUTHORIZED | FailureKind.NOT_FOUND | FailureKind.LIST_HIDDEN:
            return paused(FailureKind(kind))
        case FailureKind.NO_CREDITS:
            return WatchChange(now + dt.timedelta(seconds=max(interval, NO_CREDITS_BACKOFF)),
                               WatchStatus.BACKOFF, REASONS[FailureKind.NO_CREDITS])
        case FailureKind.RATE_LIMITED:
            return WatchChange(now + dt.timedelta(seconds=max(interval, retry_after or 0.0)))
    return None


def paused(why: str) -> WatchChange:
    return WatchChange(None, WatchStatus.PAUSED, REASONS[why])


def after_send(job: DeliveryJob, result: SendResult, *, now: dt.datetime,
               rng: random.Random | None = None) -> DeliveryOutcome:
    """A delivery after one attempt: delivered, retried later, failed for good, or gone."""
    attempts = job.attempts + 1
    if result.ok:
        return DeliveryOutcome(job.delivery_id, Outcome.DELIVERED, attempts, result.status, None, now)
    if result.gone:
        return DeliveryOutcome(job.delivery_id, Outcome.GONE, attempts, result.status, None, now,
                               remove_subscription=True)
    error = result.error or f"HTTP {result.status}"
    delay = next_attempt_delay(attempts, result.retry_after, rng)
    if delay is None:
        return DeliveryOutcome(job.delivery_id, Outcome.FAILED, attempts, result.status, error, now)
    return DeliveryOutcome(job.delivery_id, Outcome.RETRY, attempts, result.status, error,
                           now + dt.timedelta(seconds=delay))


def unreadable_secret(job: DeliveryJob, *, now: dt.datetime) -> DeliveryOutcome:
    """The signing secret cannot be decrypted: no retry can fix that."""
    return DeliveryOutcome(job.delivery_id, Outcome.FAILED, job.attempts, None,
                           "the signing secret can no longer be read", now)
