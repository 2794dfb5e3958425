"""cost controls: credit ledger per owner and day, per watch and day; checkEvery and budget on watches

Revision ID: 0005_cost_controls
Revises: 0004_filters
"""
import sqlalchemy as sa
from alembic import op

revision = "0005_cost_controls"
down_revision = "0004_filters"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("watches", sa.Column("check_every_minutes", sa.Integer(), nullable=True))
    op.add_column("watches", sa.Column("check_auto", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("watches", sa.Column("daily_budget", sa.Integer(), nullable=True))
    op.create_table(
        "credit_days",
        sa.Column("owner_hash", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("refreshes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("owner_hash", "day"),
    )
    op.create_table(
        "watch_days",
        sa.Column("watch_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("credits", sa.Integer(), nullable=False),
        sa.Column("refreshes", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["watch_id"], ["watches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("watch_id", "day"),
    )


def downgrade():
    op.drop_table("watch_days")
    op.drop_table("credit_days")
    op.drop_column("watches", "daily_budget")
    op.drop_column("watches", "check_auto")
    op.drop_column("watches", "check_every_minutes")
