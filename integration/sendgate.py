"""Per-owner and per-target-host limits on the sends one worker makes.

- at most `per_owner` sends in flight per owner and `per_host` per target host, so one
  customer's slow (or hostile) receivers hold a few delivery threads, never all of them;
- at most `host_rps` requests per second to one host (a token bucket, burst of one
  second's worth), so we never flood a receiver; 0 turns the rate limit off.

The limits hold per worker process (each process has its own gate). A delivery the gate
refuses is given back unsent: it is not an attempt. Thread-safe; `monotonic` is passed
in so tests can move time.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

_MAX_BUCKETS = 4096  # forget full buckets past this many hosts (a full bucket is the default state)


@dataclass
class _Bucket:
    tokens: float
    at: float


class SendGate:
    def __init__(self, *, per_owner: int, per_host: int, host_rps: float, monotonic=time.monotonic):
        self.per_owner = max(1, per_owner)
        self.per_host = max(1, per_host)
        self.host_rps = max(0.0, host_rps)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._owners: Counter[str] = Counter()
        self._hosts: Counter[str] = Counter()
        self._buckets: dict[str, _Bucket] = {}

    def busy_owners(self) -> frozenset[str]:
        """Owners at their cap: the claim leaves their deliveries for later."""
        with self._lock:
            return frozenset(o for o, n in self._owners.items() if n >= self.per_owner)

    def acquire(self, owner: str, host: str) -> float:
        """0.0: go (call release() when the send ends). Otherwise do not send now: the
        seconds until the host's rate allows one more (0 < wait), or -1.0 when the owner
        or host is at its in-flight cap (retry at the next claim)."""
        with self._lock:
            if self._owners[owner] >= self.per_owner or self._hosts[host] >= self.per_host:
                return -1.0
            wait = self._take_token(host)
            if wait > 0:
                return wait
            self._owners[owner] += 1
            self._hosts[host] += 1
            return 0.0

    def release(self, owner: str, host: str) -> None:
        with self._lock:
            for counter, key in ((self._owners, owner), (self._hosts, host)):
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]

    def _take_token(self, host: str) -> float:
        if not self.host_rps:
            return 0.0
        now = self._monotonic()
        burst = max(1.0, self.host_rps)
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._forget_full(now, burst)
            bucket = self._buckets[host] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.at) * self.host_rps)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.host_rps

    def _forget_full(self, now: float, burst: float) -> None:
        for host in [h for h, b in self._buckets.items() if b.tokens + (now - b.at) * self.host_rps >= burst]:
            del self._buckets[host]
