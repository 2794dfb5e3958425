"""subscriptions bounded and idempotent; watch retention; Subscription.active dropped

Revision ID: 0002_hardening
Revises: 0001

Written without batch mode on purpose: SQLite's batch mode copies and drops the table,
and with foreign keys on, dropping `subscriptions` would cascade-delete its deliveries.
Plain ADD/DROP COLUMN and CREATE INDEX work on SQLite >= 3.35 and PostgreSQL alike.
"""
import datetime as dt
import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0003_hardening"
down_revision = "0002_detection"
branch_labels = None
depends_on = None


def upgrade():
    conn = op.get_bind()
    op.add_column("watches", sa.Column("last_used_at", sa.DateTime(), nullable=True))
    # Existing watches get a full idle period from the upgrade, not from their creation.
    conn.execute(sa.text("UPDATE watches SET last_used_at = :now"),
                 {"now": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)})
    op.create_index("ix_watches_last_used", "watches", ["last_used_at"])

    op.add_column("subscriptions", sa.Column("event", sa.String(length=32), server_default="new_following",
                                             nullable=False))
    op.add_column("subscriptions", sa.Column("target_hash", sa.String(length=64), server_default="",
                                             nullable=False))
    rows = conn.execute(sa.text("SELECT id, owner_hash, watch_id, target_url FROM subscriptions "
                                "ORDER BY created_at, id")).all()
    seen = set()
    for sub_id, owner, watch_id, url in rows:
        digest = hashlib.sha256(url.encode()).hexdigest()
        if (owner, watch_id, digest) in seen:
            # An older identical subscription exists: the receiver got every event twice.
            # Keep the oldest; this one's pending deliveries go with it.
            conn.execute(sa.text("DELETE FROM deliveries WHERE subscription_id = :id"), {"id": sub_id})
            conn.execute(sa.text("DELETE FROM subscriptions WHERE id = :id"), {"id": sub_id})
            continue
        seen.add((owner, watch_id, digest))
        conn.execute(sa.text("UPDATE subscriptions SET target_hash = :h WHERE id = :id"), {"h": digest, "id": sub_id})
    if conn.dialect.name == "postgresql":
        op.alter_column("subscriptions", "target_hash", server_default=None)
    op.create_index("uq_subscription_target", "subscriptions", ["owner_hash", "watch_id", "event", "target_hash"],
                    unique=True)
    # Never set anywhere (pausing is the watch's status); the filters on it are gone too.
    op.drop_column("subscriptions", "active")


def downgrade():
    op.add_column("subscriptions", sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False))
    op.drop_index("uq_subscription_target", table_name="subscriptions")
    op.drop_column("subscriptions", "target_hash")
    op.drop_column("subscriptions", "event")
    op.drop_index("ix_watches_last_used", table_name="watches")
    op.drop_column("watches", "last_used_at")
