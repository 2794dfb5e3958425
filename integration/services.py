"""The long-lived objects one process shares: settings, database, upstream client, vault, auth memory."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from integration import rotate
from integration.authcache import AuthMemory
from integration.config import Settings
from integration.db import make_engine, make_read_session_factory, make_session_factory
from integration.leases import LeaseKeeper
from integration.models import utcnow
from integration.observability import UPSTREAM_CALLS, labelled
from integration.security import KeyVault, key_hash
from integration.upstream import DumplingClient


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker
    client: DumplingClient
    vault: KeyVault
    leases: LeaseKeeper
    auth: AuthMemory = field(default_factory=AuthMemory)  # per-process key caches (integration.authcache)
    clock: Callable[[], dt.datetime] = utcnow  # naive UTC; tests pass a fake clock
    reads: sessionmaker | None = None  # read-only sessions (no write lock on SQLite); from `engine` by default

    def __post_init__(self):
        if self.reads is None:
            self.reads = make_read_session_factory(self.engine)

    @classmethod
    def build(cls, settings: Settings, threads: int | None = None) -> "Services":
        """`threads`: how many of this process's threads use the database at once, the size of
        its pool (default GUNICORN_THREADS, the web process); DB_POOL_SIZE, when set, wins.
        The upstream client needs no such number: it keeps a connection per calling thread."""
        engine = make_engine(settings.database_url, settings.db_pool_size or threads or settings.gunicorn_threads)
        client = DumplingClient(
            settings.dumpling_base_url,  # a kept-alive connection per calling thread, by itself
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            total_seconds=settings.upstream_total_seconds,
            retries=settings.upstream_retries,
            max_bytes=settings.upstream_max_bytes,
            on_call=lambda outcome: labelled(UPSTREAM_CALLS, outcome).inc(),
        )
        sessions = make_session_factory(engine)
        return cls(settings, engine, sessions, client,
                   KeyVault(settings.secret_key, settings.old_secret_keys),
                   LeaseKeeper(sessions, settings.lease_seconds),
                   AuthMemory(settings.auth_negative_cache_seconds))

    def owner(self, api_key: str) -> str:
        """The caller's owner hash. During a rotation (OLD_SECRET_KEYS), rows stored under the
        hash of an old secret are moved to this one the first time the key is seen."""
        owner = key_hash(self.settings.secret_key, api_key)
        if self.settings.old_secret_keys and not self.auth.adopted(owner):
            rotate.adopt_owner(self, api_key, owner)
            self.auth.mark_adopted(owner)
        return owner
