"""Short refresh leases, renewed while the refresh runs.

A refresh holds a lease on its watch row so that concurrent callers share it instead of
paying twice. The lease is short (``lease_seconds``, default 10 s) and one thread per
process renews every lease the process holds, in one UPDATE, every third of it: a
process killed mid-refresh stops renewing, and another caller takes the watch over
within seconds instead of waiting for a lease long enough to cover the slowest refresh.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.orm import sessionmaker

from integration.db import transaction
from integration.models import Watch, utcnow

logger = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, sessions: sessionmaker, lease_seconds: float, clock: Callable[[], dt.datetime] = utcnow):
        self.sessions = sessions
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._held: dict[str, int] = {}  # token -> watch id
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    def until(self) -> dt.datetime:
        return self.clock() + dt.timedelta(seconds=self.lease_seconds)

    def hold(self, token: str, watch_id: int) -> None:
        with self._lock:
            self._held[token] = watch_id
            if self._thread is None or not self._thread.is_alive():
                # Started on first use, not at import or app creation (gunicorn forks).
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()

    def drop(self, token: str) -> None:
        with self._lock:
            self._held.pop(token, None)

    def renew_now(self) -> int:
        with self._lock:
            tokens = list(self._held)
        if not tokens:
            return 0
        with transaction(self.sessions) as session:
            return session.execute(
                update(Watch).where(Watch.lease_token.in_(tokens)).values(lease_until=self.until())
                .execution_options(synchronize_session=False)).rowcount

    def _run(self) -> None:
        while True:
            with self._lock:
                self._wake.wait(self.lease_seconds / 3)
            try:
                self.renew_now()
            except Exception:  # a database hiccup: the next turn tries again before expiry
                logger.warning("lease renewal failed", exc_info=True)
