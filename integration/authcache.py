"""What one process remembers about keys (one `AuthMemory` per process, on `Services`).

- Keys that worked: so a successful call refreshes the stored auth check (`auth_checks`)
  at most every few minutes per key, not on every call.
- Keys the upstream refused (by owner hash) and client addresses that sent several
  refused keys: for AUTH_NEGATIVE_CACHE_SECONDS they get the same 401 without an
  upstream call, so a stream of random keys costs the upstream nothing.
- Owners already adopted from an old SECRET_KEY during a rotation (integration.rotate).

Everything is bounded (LRU/TTL, MAX_ENTRIES each) and per process: a second process
asks the upstream once more, which is the only cost.
"""
from __future__ import annotations

import threading
import time

from cachetools import LRUCache, TTLCache

MAX_ENTRIES = 10_000
# Distinct refused keys one address may send inside the window before its unknown keys are
# refused outright. Not 1: Zapier and Make call from shared addresses, so one careless user
# must not lock out the others; keys that worked in this process are never refused this way.
ADDRESS_REFUSALS = 10


class AuthMemory:
    def __init__(self, negative_seconds: float = 60, *, timer=time.monotonic, max_entries: int = MAX_ENTRIES):
        self._lock = threading.Lock()
        self._timer = timer
        self._negative = negative_seconds > 0
        ttl = max(negative_seconds, 1)
        self._written: LRUCache = LRUCache(max_entries)   # owner -> when this process last wrote its auth check
        self._good: LRUCache = LRUCache(max_entries)      # owners whose key worked in this process
        self._refused: TTLCache = TTLCache(max_entries, ttl=ttl, timer=timer)    # owner -> True
        self._addresses: TTLCache = TTLCache(max_entries, ttl=ttl, timer=timer)  # address -> refused owners
        self._adopted: LRUCache = LRUCache(max_entries)   # owners already moved off old secrets

    # ------------------------------------------------------------ keys that worked

    def passed(self, owner: str) -> None:
        with self._lock:
            self._good[owner] = True
            self._refused.pop(owner, None)

    def due_for_write(self, owner: str, every: float) -> bool:
        """True (and noted) if this process has not written the owner's auth check for `every` s."""
        now = self._timer()
        with self._lock:
            if now - self._written.get(owner, -every - 1) < every:
                return False
            self._written[owner] = now
            return True

    # ------------------------------------------------------------ keys that did not

    def refused(self, owner: str, address: str | None) -> None:
        with self._lock:
            self._good.pop(owner, None)
            self._written.pop(owner, None)
            if not self._negative:
                return
            self._refused[owner] = True
            if address:
                owners = self._addresses.get(address, frozenset())
                if len(owners) < ADDRESS_REFUSALS:
                    self._addresses[address] = owners | {owner}  # re-set: the window restarts

    def is_refused(self, owner: str, address: str | None) -> bool:
        if not self._negative:
            return False
        with self._lock:
            if owner in self._refused:
                return True
            if owner in self._good or not address:
                return False
            return len(self._addresses.get(address, ())) >= ADDRESS_REFUSALS

    # ------------------------------------------------------------ secret rotation

    def adopted(self, owner: str) -> bool:
        with self._lock:
            return owner in self._adopted

    def mark_adopted(self, owner: str) -> None:
        with self._lock:
            self._adopted[owner] = True
