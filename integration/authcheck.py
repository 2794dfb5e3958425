"""The connection test: prove a key works without spending a credit every time.

Zapier and Make run the test whenever a connection is used in the editor and
periodically; a credit each time would be the user's money wasted. A successful
check is remembered per key hash for AUTH_CACHE_SECONDS (default 6 h: long enough
that editor sessions and periodic checks are free, short enough that a revoked key
is noticed the same day; any upstream 401 forgets it at once).

The other way round, a key the upstream refused is answered with the same 401 from the
process's negative cache (`Services.auth`, AUTH_NEGATIVE_CACHE_SECONDS) without asking again.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from integration.db import transaction
from integration.errors import UpstreamFailure, from_upstream
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
            raise  # an unauthorized one is forgotten by the app's error handler
    remember(svc, owner, force=True)
    return {"ok": True, "label": key_label(api_key), "cached": False}


_REMEMBER_EVERY = 600.0  # write at most every 10 min per owner: not on every action call


def remember(svc: Services, owner: str, *, force: bool = False) -> None:
    """Any successful upstream call proves the key: refresh the cache for free."""
    svc.auth.passed(owner)
    every = min(_REMEMBER_EVERY, svc.settings.auth_cache_seconds / 2)
    if not svc.auth.due_for_write(owner, 0 if force else every):
        return
    try:
        with transaction(svc.sessions) as session:
            session.merge(AuthCheck(owner_hash=owner, checked_at=utcnow()))
    except IntegrityError:
        pass  # a concurrent request inserted it first: it is fresh either way


def forget(svc: Services, owner: str, address: str | None = None) -> None:
    """The upstream refused the key: forget the passed check, and answer this key (and an
    address sending many refused keys) from the negative cache for a while."""
    svc.auth.refused(owner, address)
    with transaction(svc.sessions) as session:
        session.execute(delete(AuthCheck).where(AuthCheck.owner_hash == owner))


def refuse_if_known_bad(svc: Services, owner: str, address: str | None) -> None:
    """The same 401 the upstream gave, without asking it again (AUTH_NEGATIVE_CACHE_SECONDS)."""
    if svc.auth.is_refused(owner, address):
        raise from_upstream(UpstreamFailure("unauthorized", 401))
