"""What the worker passes around: the states it stores and the jobs it runs.

The enums' values are the strings stored in `watches.status` and `deliveries.status`
(a StrEnum equals its value, so queries and stored rows need no conversion)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from integration.platforms import Platform


class WatchStatus(StrEnum):
    ACTIVE = "active"
    BACKOFF = "backoff"  # upstream trouble the worker retries by itself (no credits)
    PAUSED = "paused"    # waits for the user to subscribe again (refused key, missing list)


CLAIMABLE = (WatchStatus.ACTIVE, WatchStatus.BACKOFF)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Outcome(StrEnum):
    """One send's result, as counted in the worker's stats and the deliveries metric."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    GONE = "gone"


@dataclass(frozen=True)
class RefreshJob:
    watch_id: int
    key_enc: str        # the stored key it was claimed with: a reconnect meanwhile wins
    platform: Platform  # requestSource follows the platform the user subscribed from
    was_clean: bool     # active without a reason: a success needs no status write
    owner_hash: str = ""          # whose ledger the refresh's credits go to
    daily_budget: int | None = None  # the budget stored with the watch (X-Daily-Credit-Budget)
    check_every_minutes: int | None = None  # its checkEvery (claims.job_interval: no read for it)
    check_auto: bool = False
    crowds: bool = False          # "followed by many" subscriptions on it: evaluated after the refresh
    lease: object | None = None   # watches.Lease: the refresh lease the claim took (None: another refresh held it)
    last_refresh_at: dt.datetime | None = None


@dataclass(frozen=True)
class DeliveryJob:
    delivery_id: str    # also the webhook-id header, the same on every attempt
    attempts: int       # attempts already made
    subscription_id: str
    owner_hash: str
    target_url: str
    secret_enc: str
    body: bytes

    @property
    def host(self) -> str:
        return (urlsplit(self.target_url).hostname or "").lower()


@dataclass(frozen=True)
class WatchChange:
    """What a refresh failure does to its watch; written only if the key is unchanged."""

    next_poll_at: dt.datetime | None  # None: no more polls until the user subscribes again
    status: WatchStatus | None = None  # None: keep the status and reason
    reason: str | None = None

    def values(self) -> dict:
        out = {"next_poll_at": self.next_poll_at}
        if self.status is not None:
            out.update(status=self.status, status_reason=self.reason)
        return out


@dataclass(frozen=True)
class DeliveryOutcome:
    """What a receiver's answer does to a delivery (see policies.after_send)."""

    delivery_id: str
    outcome: Outcome
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: dt.datetime      # for a retry; else when it was decided
    remove_subscription: bool = False  # 410 Gone: the receiver unsubscribed

    @property
    def status(self) -> DeliveryStatus:
        return {Outcome.DELIVERED: DeliveryStatus.DELIVERED, Outcome.RETRY: DeliveryStatus.PENDING}.get(
            self.outcome, DeliveryStatus.FAILED)
