"""Unfollows: events.event (the kind), no unique (watch, account) on events, unfollow_sweeps

Revision ID: 0006_unfollows
Revises: 0005_cost_controls

An account may now have several events (followed, unfollowed, followed again). Dropping a
unique constraint needs a table copy on SQLite (batch mode); dropping the old `events`
table would cascade-delete its deliveries (foreign keys are on), so on SQLite they are kept
aside and put back after the copy.
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_unfollows"
down_revision = "0005_cost_controls"
branch_labels = None
depends_on = None


def _on_events(change):
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        conn.execute(sa.text("CREATE TEMP TABLE kept_deliveries AS SELECT * FROM deliveries"))
    with op.batch_alter_table("events") as batch:
        change(batch)
    if sqlite:
        conn.execute(sa.text("DELETE FROM deliveries"))
        conn.execute(sa.text("INSERT INTO deliveries SELECT * FROM kept_deliveries"))
        conn.execute(sa.text("DROP TABLE kept_deliveries"))


def upgrade():
    def change(batch):
        batch.add_column(sa.Column("event", sa.String(length=32), server_default="new_following", nullable=False))
        batch.drop_constraint("uq_event_watch_account", type_="unique")
        batch.create_index("ix_events_watch_account", ["watch_id", "account_id"], unique=False)

    _on_events(change)
    op.create_table(
        "unfollow_sweeps",
        sa.Column("watch_id", sa.Integer(), nullable=False),
        sa.Column("sweep_every_hours", sa.Integer(), nullable=False),
        sa.Column("next_sweep_at", sa.DateTime(), nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claim_until", sa.DateTime(), nullable=True),
        sa.Column("accounts", sa.LargeBinary(), nullable=True),
        sa.Column("top_cursor", sa.BigInteger(), nullable=True),
        sa.Column("swept_at", sa.DateTime(), nullable=True),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.Column("sweeps", sa.Integer(), nullable=False),
        sa.Column("interruptions", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["watch_id"], ["watches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("watch_id"),
    )
    op.create_index("ix_unfollow_sweeps_due", "unfollow_sweeps", ["next_sweep_at"])


def downgrade():
    op.drop_index("ix_unfollow_sweeps_due", table_name="unfollow_sweeps")
    op.drop_table("unfollow_sweeps")
    op.execute("DELETE FROM events WHERE event <> 'new_following'")
    # The unique (watch, account) comes back: keep the newest event of an account followed again.
    op.execute("DELETE FROM events WHERE id NOT IN (SELECT MAX(id) FROM events GROUP BY watch_id, account_id)")

    def change(batch):
        batch.drop_index("ix_events_watch_account")
        batch.create_unique_constraint("uq_event_watch_account", ["watch_id", "account_id"])
        batch.drop_column("event")

    _on_events(change)
