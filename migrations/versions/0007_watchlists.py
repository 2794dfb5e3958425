"""Watchlists: subscriptions.group_id (one row per handle of a watchlist subscription)

Revision ID: 0007_watchlists
Revises: 0006_unfollows
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_watchlists"
down_revision = "0006_unfollows"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("subscriptions", sa.Column("group_id", sa.String(length=32), nullable=True))
    op.create_index("ix_subscriptions_group", "subscriptions", ["group_id"])


def downgrade():
    op.drop_index("ix_subscriptions_group", table_name="subscriptions")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("group_id")
