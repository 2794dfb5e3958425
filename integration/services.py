"""The long-lived objects one process shares: settings, database, upstream client, vault."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from integration.config import Settings
from integration.db import make_engine, make_session_factory
from integration.observability import UPSTREAM_CALLS
from integration.models import utcnow
from integration.security import KeyVault, key_hash
from integration.upstream import DumplingClient


@dataclass
class Services:
    settings: Settings
    engine: Engine
    sessions: sessionmaker
    client: DumplingClient
    vault: KeyVault
    clock: Callable[[], dt.datetime] = utcnow  # naive UTC; tests pass a fake clock

    @classmethod
    def build(cls, settings: Settings) -> "Services":
        engine = make_engine(settings.database_url)
        client = DumplingClient(
            settings.dumpling_base_url,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            total_seconds=settings.upstream_total_seconds,
            retries=settings.upstream_retries,
            on_call=lambda outcome: UPSTREAM_CALLS.labels(outcome).inc(),
        )
        return cls(settings, engine, make_session_factory(engine), client,
                   KeyVault(settings.secret_key, settings.old_secret_keys))

    def owner(self, api_key: str) -> str:
        return key_hash(self.settings.secret_key, api_key)
