"""Tables. Timestamps are naive UTC (`utcnow()`), identical on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint, false, text, true)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Watch(Base):
    """One (owner, handle) pair: its detection state and journal head."""

    __tablename__ = "watches"
    __table_args__ = (UniqueConstraint("owner_hash", "handle", name="uq_watch_owner_handle"),
                      Index("ix_watches_next_poll", "next_poll_at"),  # the worker's due-watch scan
                      Index("ix_watches_last_used", "last_used_at"))  # retention's idle scan

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    handle: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    # Detection state (integration.detection.WatchState) and the baseline samples.
    watermark: Mapped[int | None] = mapped_column(BigInteger)
    top_ids: Mapped[bytes | None] = mapped_column(LargeBinary)  # idset.pack_list; None: none
    # detection.WatchState.exclusive; rows older than it get the conservative value.
    watermark_exclusive: Mapped[bool] = mapped_column(Boolean, default=False, server_default=true(),
                                                      nullable=False)
    # The detection.SafeMode of the last refresh, when the upstream deviated from its doc.
    detection_mode: Mapped[str | None] = mapped_column(String(32))
    # Zapier's first-poll samples: a few flat accounts of the baseline page (items.pack_samples).
    samples: Mapped[bytes | None] = mapped_column(LargeBinary)
    last_sequence: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    last_refresh_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Coalescing: a refresh in progress holds a lease; others wait for it instead of paying again.
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Worker (webhook subscriptions): the key to refresh with, encrypted, and the schedule.
    api_key_enc: Mapped[str | None] = mapped_column(Text)
    next_poll_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="active", nullable=False)
    status_reason: Mapped[str | None] = mapped_column(Text)
    truncations: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    # Retention (integration.retention): when a trigger call or a subscribe last asked for it,
    # written at most hourly; a watch without subscriptions unused for WATCH_IDLE_DAYS goes.
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # Cost controls (integration/ledger.py, integration/adaptive.py): the smallest fixed
    # `checkEvery` any caller of the key asked for (minutes; None: none asked), whether a
    # caller asked for "auto", and the daily budget the last request carrying one sent
    # (the worker spends within it).
    check_every_minutes: Mapped[int | None] = mapped_column(Integer)
    check_auto: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), nullable=False)
    daily_budget: Mapped[int | None] = mapped_column(Integer)


class CreditDay(Base):
    """The exact credit ledger: one row per key owner and UTC day. `reserved` counts upstream
    calls in flight under a budget (integration/ledger.py)."""

    __tablename__ = "credit_days"

    owner_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    credits: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    reserved: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    refreshes: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class WatchDay(Base):
    """Credits and refreshes of one watch per UTC day (GET /usage, per watch)."""

    __tablename__ = "watch_days"

    watch_id: Mapped[int] = mapped_column(ForeignKey("watches.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    credits: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    refreshes: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class KnownSegment(Base):
    """Every account id a watch has ever seen (an account is emitted at most once), packed:
    one row per range of ids (integration/known.py, integration/idset.py)."""

    # A rowid table on SQLite: a WITHOUT ROWID row keeps at most ~1 KB in its page, and a
    # segment of ~2 KB would spill into an overflow page of its own.
    __tablename__ = "known_segments"

    watch_id: Mapped[int] = mapped_column(ForeignKey("watches.id", ondelete="CASCADE"), primary_key=True)
    # The lowest id this segment may hold, minus 2**63 (ids are unsigned 64-bit; BIGINT is
    # signed): it holds the ids from here to the next segment's bound. The first is 0 - 2**63.
    low: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ids: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # idset.pack: sorted uint64


class KnownTextId(Base):
    """A known id that is not a decimal below 2**64 (idset.packable): kept as it is."""

    __tablename__ = "known_text_ids"
    __table_args__ = ({"sqlite_with_rowid": False},)

    watch_id: Mapped[int] = mapped_column(ForeignKey("watches.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class Event(Base):
    """The journal: one row per new follow or unfollow, numbered per watch. The same account
    may have several (followed, unfollowed, followed again): the known ids decide what
    is new, so no unique (watch, account) here."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("watch_id", "sequence", name="uq_event_watch_sequence"),
        Index("ix_events_watch_account", "watch_id", "account_id"),
        Index("ix_events_detected", "watch_id", "detected_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    watch_id: Mapped[int] = mapped_column(ForeignKey("watches.id", ondelete="CASCADE"), nullable=False)
    sequence: Mapped[int] = mapped_column(Integer, nullable=False)
    account_id: Mapped[str] = mapped_column(String(32), nullable=False)
    detected_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)  # JSON: the flat account
    # items.EventKind: new_following, or unfollowed (the account as last seen).
    event: Mapped[str] = mapped_column(String(32), default="new_following", server_default="new_following",
                                       nullable=False)
    # followed_by_many: the crowd whose threshold this follow crossed (integration/crowds.py).
    # No foreign key (SQLite cannot add one in place, and copying `events` would drop its
    # deliveries): retention deletes a crowd's events with it.
    crowd_id: Mapped[int | None] = mapped_column(Integer, index=True)


class UnfollowSweep(Base):
    """Unfollow detection for one watch (integration/sweeps.py): the record of its last
    complete sweep and when the next is due. A row exists once someone asked for unfollows."""

    __tablename__ = "unfollow_sweeps"
    __table_args__ = (Index("ix_unfollow_sweeps_due", "next_sweep_at"),)

    watch_id: Mapped[int] = mapped_column(ForeignKey("watches.id", ondelete="CASCADE"), primary_key=True)
    # The smallest `sweepEvery` (hours) any trigger call or subscription asked for.
    sweep_every_hours: Mapped[int] = mapped_column(Integer, nullable=False)
    next_sweep_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # None: never yet, due at once
    # A sweep in progress holds it (a killed worker's claim expires; nothing was written).
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claim_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # The last complete sweep (unfollows.Record): zlib-compressed JSON of the flat accounts in
    # list order (the unfollow item is the account as last seen), and its first maxCursor.
    accounts: Mapped[bytes | None] = mapped_column(LargeBinary)
    top_cursor: Mapped[int | None] = mapped_column(BigInteger)
    swept_at: Mapped[dt.datetime | None] = mapped_column(DateTime)  # when that sweep started
    last_sequence: Mapped[int] = mapped_column(Integer, default=0, nullable=False)  # the journal then
    sweeps: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    interruptions: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


class Subscription(Base):
    """A webhook target for one watch and one kind of event. The same (owner, watch, event,
    target) is one subscription: subscribing again returns it (a unique index, so concurrent
    subscribes cannot make two). A subscription has no state of its own: pausing is the
    watch's (`Watch.status`), and Zapier/Make turn a hook off by deleting it (or 410)."""

    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_owner", "owner_hash"), Index("ix_subscriptions_watch", "watch_id"),
                      # Partial: two crowds on the same handles and target are two subscriptions.
                      Index("uq_subscription_target", "owner_hash", "watch_id", "event", "target_hash", unique=True,
                            sqlite_where=text("crowd_id IS NULL"), postgresql_where=text("crowd_id IS NULL")),
                      Index("uq_subscription_crowd_target", "owner_hash", "watch_id", "crowd_id", "target_hash",
                            unique=True, sqlite_where=text("crowd_id IS NOT NULL"),
                            postgresql_where=text("crowd_id IS NOT NULL")),
                      Index("ix_subscriptions_group", "group_id"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # A watchlist subscription is one row per handle, sharing a group id (the id its
    # subscribe answered, which deletes them all) and one signing secret; NULL: a single handle.
    group_id: Mapped[str | None] = mapped_column(String(32))
    watch_id: Mapped[int] = mapped_column(ForeignKey("watches.id", ondelete="CASCADE"), nullable=False)
    owner_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    target_url: Mapped[str] = mapped_column(Text, nullable=False)
    secret_enc: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    # items.EventKind (CONTRACT.md, "Beyond new follows").
    event: Mapped[str] = mapped_column(String(32), default="new_following", server_default="new_following",
                                       nullable=False)
    target_hash: Mapped[str] = mapped_column(String(64), nullable=False)  # SHA-256 of target_url, for the unique index
    # integration.filters.Filters as JSON, or NULL (no filter): applied when deliveries are written.
    filters: Mapped[str | None] = mapped_column(Text)
    # event followed_by_many: the crowd delivered (its rows: one per handle of the group). No
    # foreign key, as events.crowd_id: a crowd is deleted only once it has no subscription.
    crowd_id: Mapped[int | None] = mapped_column(Integer, index=True)


class Crowd(Base):
    """"Followed by many" (integration/crowds.py): an owner's set of handles, minHandles and
    withinDays. One row per distinct definition of an owner, shared by trigger calls and
    subscriptions asking for it."""

    __tablename__ = "crowds"
    __table_args__ = (UniqueConstraint("owner_hash", "definition", name="uq_crowd_owner_definition"),
                      Index("ix_crowds_last_used", "last_used_at"))  # retention's idle scan

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    definition: Mapped[str] = mapped_column(String(64), nullable=False)  # SHA-256 of the definition
    handles: Mapped[str] = mapped_column(Text, nullable=False)  # JSON list, sorted
    min_handles: Mapped[int] = mapped_column(Integer, nullable=False)
    within_days: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    last_used_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class CrowdWatch(Base):
    """A crowd's handle: how far its journal was evaluated. Per-watch sequences commit in
    order under the watch row lock, so this mark is exact (a global id would not be on
    PostgreSQL, where ids are taken before commit order is known)."""

    __tablename__ = "crowd_watches"
    __table_args__ = (Index("ix_crowd_watches_watch", "watch_id"),)

    crowd_id: Mapped[int] = mapped_column(ForeignKey("crowds.id", ondelete="CASCADE"), primary_key=True)
    watch_id: Mapped[int] = mapped_column(ForeignKey("watches.id", ondelete="CASCADE"), primary_key=True)
    scanned_sequence: Mapped[int] = mapped_column(Integer, nullable=False)


class CrowdFired(Base):
    """An account a crowd has fired for (or that was over the threshold when the crowd was
    made): "once" holds even after the journal is trimmed."""

    __tablename__ = "crowd_fired"
    __table_args__ = ({"sqlite_with_rowid": False},)

    crowd_id: Mapped[int] = mapped_column(ForeignKey("crowds.id", ondelete="CASCADE"), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class Delivery(Base):
    """The outbox: written with the journal rows, sent by the worker."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_delivery_sub_event"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # also the webhook-id header
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="pending", nullable=False)  # pending/delivered/failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class AuthCheck(Base):
    """A key that recently passed the auth test (by owner hash), so the test is free."""

    __tablename__ = "auth_checks"

    owner_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    checked_at: Mapped[dt.datetime] = mapped_column(DateTime, nullable=False)
