"""Retention of what nobody uses any more (the worker calls this about hourly).

- A watch that no trigger call and no subscribe asked for in WATCH_IDLE_DAYS, and that
  has no subscription, is deleted with its known accounts and its journal (ON DELETE
  CASCADE, in the same statement, so a watch is never left without its history).
- A "followed by many" crowd that no trigger call or subscribe asked for in WATCH_IDLE_DAYS,
  and that has no subscription, is deleted with its marks, fired accounts and events.
- An auth check older than AUTH_CACHE_SECONDS proves nothing any more (and after a
  secret rotation, rows under old owner hashes would otherwise stay forever).
"""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import and_, delete, exists, or_, select

from integration import crowds
from integration.db import transaction
from integration.models import AuthCheck, Subscription, Watch
from integration.observability import log
from integration.services import Services

logger = logging.getLogger(__name__)

BATCH = 500  # watches per transaction: a large backlog never holds the write lock for long


def idle_watch_filter(cutoff: dt.datetime, now: dt.datetime):
    return and_(
        or_(Watch.last_used_at < cutoff, and_(Watch.last_used_at.is_(None), Watch.created_at < cutoff)),
        ~exists().where(Subscription.watch_id == Watch.id),
        or_(Watch.lease_until.is_(None), Watch.lease_until < now),  # not while a refresh runs
    )


def delete_idle_watches(svc: Services, now: dt.datetime) -> int:
    cutoff = now - dt.timedelta(days=svc.settings.watch_idle_days)
    deleted = 0
    while True:
        with transaction(svc.sessions) as session:
            ids = session.scalars(select(Watch.id).where(idle_watch_filter(cutoff, now)).limit(BATCH)).all()
            if not ids:
                break
            # The filter again in the DELETE: a watch used since the SELECT stays.
            deleted += session.execute(delete(Watch).where(Watch.id.in_(ids), idle_watch_filter(cutoff, now))
                                       .execution_options(synchronize_session=False)).rowcount
        if len(ids) < BATCH:
            break
    if deleted:
        log(logger, logging.INFO, "idle watches deleted", count=deleted, idle_days=svc.settings.watch_idle_days)
    return deleted


def delete_idle_crowds(svc: Services, now: dt.datetime) -> int:
    deleted = crowds.delete_idle(svc, now - dt.timedelta(days=svc.settings.watch_idle_days))
    if deleted:
        log(logger, logging.INFO, "idle crowds deleted", count=deleted, idle_days=svc.settings.watch_idle_days)
    return deleted


def delete_expired_auth_checks(svc: Services, now: dt.datetime) -> int:
    cutoff = now - dt.timedelta(seconds=svc.settings.auth_cache_seconds)
    with transaction(svc.sessions) as session:
        return session.execute(delete(AuthCheck).where(AuthCheck.checked_at < cutoff)
                               .execution_options(synchronize_session=False)).rowcount
