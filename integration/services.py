"""The long-lived objects one process shares: settings, database, upstream client, vault."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from integration.config import Settings
from integration.db import make_engine, make_session_factory
from integration.leases import LeaseKeeper
from integration.observability import UPSTREAM_CALLS
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

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        import os

        engine = make_engine(settings.database_url)
        client = DumplingClient(
            settings.dumpling_base_url,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            total_seconds=settings.upstream_total_seconds,
            retries=settings.upstream_retries,
            on_call=lambda outcome: UPSTREAM_CALLS.labels(outcome).inc(),
        )
        old = tuple(k for k in os.environ.get("OLD_SECRET_KEYS", "").split(",") if k)
        sessions = make_session_factory(engine)
        return cls(settings, engine, sessions, client, KeyVault(settings.secret_key, old),
                   LeaseKeeper(sessions, settings.lease_seconds))

    def owner(self, api_key: str) -> str:
        return key_hash(self.settings.secret_key, api_key)
