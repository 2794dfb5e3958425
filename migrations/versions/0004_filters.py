"""subscriptions.filters: the filters stored with a subscription (JSON, NULL for none)

Revision ID: 0004_filters
Revises: 0003_hardening

A plain ADD COLUMN (no batch mode), for the reason 0003 gives: batch mode would copy and drop
`subscriptions`, cascading to its deliveries.
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_filters"
down_revision = "0003_hardening"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("subscriptions", sa.Column("filters", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("subscriptions", "filters")
