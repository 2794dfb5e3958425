"""The connection test: prove a key works without spending a credit every time.

Zapier and Make run the test whenever a connection is used in the editor and
periodically; a credit each time would be the user's money wasted. A successful
check is remembered per key hash for AUTH_CACHE_SECONDS (default 6 h: long enough
that editor sessions and periodic checks are free, short enough that a revoked key
is noticed the same day; any upstream 401 forgets it at once).
"""
from __future__ import annotations

import datetime as dt
import time

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from integration.db import transaction
from integration.errors import UpstreamFailure
from integration.models import AuthCheck, utcnow
from integration.platforms import Platform
from integration.security import key_label
from integration.services import Services
from integration.upstream import Meter

# Probing with a handle that follows nobody would be free (404 is a failure), but the
# upstream may answer 404 before checking credits; a real, tiny page is unambiguous.
PROBE_HANDLE = "tiktok"


def check_key(svc: Services, api_key: str, platform: Platform, meter: Meter) -> dict:
    owner = svc.owner(api_key)
    fresh_after = utcnow() - dt.timedelta(seconds=svc.settings.auth_cache_seconds)
    with transaction(svc.sessions) as session:
        row = session.get(AuthCheck, owner)
        if row is not None and row.checked_at > fresh_after:
            return {"ok": True, "label": key_label(api_key), "cached": True}
    try:
        svc.client.fetch_page(api_key, PROBE_HANDLE, platform.request_source, count=1, meter=meter)
    except UpstreamFailure as failure:
        if failure.kind != "not_found":  # 404 means the key passed authentication
            if failure.kind == "unauthorized":
                forget(svc, owner)
            raise
    remember(svc, owner, force=True)
    return {"ok": True, "label": key_label(api_key), "cached": False}


_REMEMBERED: dict[str, float] = {}  # owner -> monotonic time this process last wrote it
_REMEMBER_EVERY = 600.0             # write at most every 10 min per owner: not on every action call
_REMEMBERED_MAX = 10_000


def remember(svc: Services, owner: str, *, force: bool = False) -> None:
    """Any successful upstream call proves the key: refresh the cache for free."""
    now = time.monotonic()
    if not force and now - _REMEMBERED.get(owner, -_REMEMBER_EVERY) < min(_REMEMBER_EVERY, svc.settings.auth_cache_seconds / 2):
        return
    if len(_REMEMBERED) >= _REMEMBERED_MAX:
        _REMEMBERED.clear()  # bounded memory; the only cost is one extra write per owner
    _REMEMBERED[owner] = now
    try:
        with transaction(svc.sessions) as session:
            session.merge(AuthCheck(owner_hash=owner, checked_at=utcnow()))
    except IntegrityError:
        pass  # a concurrent request inserted it first: it is fresh either way


def forget(svc: Services, owner: str) -> None:
    _REMEMBERED.pop(owner, None)
    with transaction(svc.sessions) as session:
        session.execute(delete(AuthCheck).where(AuthCheck.owner_hash == owner))
