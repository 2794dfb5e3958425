""""Followed by many": crowds, crowd_watches, crowd_fired; events.crowd_id, subscriptions.crowd_id

Revision ID: 0008_crowds
Revises: 0007_watchlists

The new columns are nullable, without a foreign key, added in place (SQLite cannot add a
foreign key without a table copy, and copying `events` would cascade-delete its
deliveries); retention deletes a crowd's events with it. The subscriptions' unique target
index becomes partial (rows without a crowd) beside one for crowd rows, so two crowds on
the same handles and target are two subscriptions.
"""
import sqlalchemy as sa
from alembic import op

revision = "0008_crowds"
down_revision = "0007_watchlists"
branch_labels = None
depends_on = None

_NO_CROWD, _CROWD = sa.text("crowd_id IS NULL"), sa.text("crowd_id IS NOT NULL")


def _add_crowd_id(table: str) -> None:
    op.add_column(table, sa.Column("crowd_id", sa.Integer(), nullable=True))


def upgrade():
    op.create_table(
        "crowds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_hash", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.String(length=64), nullable=False),
        sa.Column("handles", sa.Text(), nullable=False),
        sa.Column("min_handles", sa.Integer(), nullable=False),
        sa.Column("within_days", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_hash", "definition", name="uq_crowd_owner_definition"),
    )
    op.create_index("ix_crowds_last_used", "crowds", ["last_used_at"])
    op.create_table(
        "crowd_watches",
        sa.Column("crowd_id", sa.Integer(), nullable=False),
        sa.Column("watch_id", sa.Integer(), nullable=False),
        sa.Column("scanned_sequence", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["crowd_id"], ["crowds.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["watch_id"], ["watches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("crowd_id", "watch_id"),
    )
    op.create_index("ix_crowd_watches_watch", "crowd_watches", ["watch_id"])
    op.create_table(
        "crowd_fired",
        sa.Column("crowd_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["crowd_id"], ["crowds.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("crowd_id", "account_id"),
        sqlite_with_rowid=False,
    )
    _add_crowd_id("events")
    op.create_index("ix_events_crowd_id", "events", ["crowd_id"])
    _add_crowd_id("subscriptions")
    op.create_index("ix_subscriptions_crowd_id", "subscriptions", ["crowd_id"])
    op.drop_index("uq_subscription_target", table_name="subscriptions")
    op.create_index("uq_subscription_target", "subscriptions", ["owner_hash", "watch_id", "event", "target_hash"],
                    unique=True, sqlite_where=_NO_CROWD, postgresql_where=_NO_CROWD)
    op.create_index("uq_subscription_crowd_target", "subscriptions",
                    ["owner_hash", "watch_id", "crowd_id", "target_hash"],
                    unique=True, sqlite_where=_CROWD, postgresql_where=_CROWD)


def downgrade():
    op.drop_index("uq_subscription_crowd_target", table_name="subscriptions")
    op.drop_index("uq_subscription_target", table_name="subscriptions")
    op.execute("DELETE FROM subscriptions WHERE crowd_id IS NOT NULL")
    op.create_index("uq_subscription_target", "subscriptions", ["owner_hash", "watch_id", "event", "target_hash"],
                    unique=True)
    op.drop_index("ix_subscriptions_crowd_id", table_name="subscriptions")
    op.drop_index("ix_events_crowd_id", table_name="events")
    op.execute("DELETE FROM events WHERE crowd_id IS NOT NULL")
    for table in ("subscriptions", "events"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("crowd_id")
    op.drop_table("crowd_fired")
    op.drop_index("ix_crowd_watches_watch", table_name="crowd_watches")
    op.drop_table("crowd_watches")
    op.drop_index("ix_crowds_last_used", table_name="crowds")
    op.drop_table("crowds")
