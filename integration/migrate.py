"""`python -m integration.migrate`: bring the database to the newest schema (Procfile `release`)."""
from __future__ import annotations

from alembic import command
from alembic.config import Config

from integration.config import ROOT, Settings


def upgrade(database_url: str | None = None) -> None:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = database_url or Settings.from_env().database_url
    command.upgrade(cfg, "head")


if __name__ == "__main__":
    upgrade()
