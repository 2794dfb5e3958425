"""Packed known ids and a small watch row: known_segments + known_text_ids replace
known_accounts; watches.top_ids packed; watches.baseline (a whole page as JSON) becomes
watches.samples (a few accounts, compressed)

Revision ID: 0009_packed_known
Revises: 0008_crowds

Watches are converted in batches (their known ids, top_ids and baseline together), with the
codec the service uses (integration/idset.py, known.py, items.py), so a converted watch is
exactly what the service would have written: the next refresh knows every id it knew.

Columns are added, filled and dropped rather than altered: on SQLite a type change copies
the table, and dropping `watches` with foreign keys on would cascade-delete the journal.

Downgrade converts back: known ids and top_ids exactly; `baseline` gets the stored samples
only (the rest of the old baseline page is gone; it was only ever Zapier's first-poll samples).
"""
import json

import sqlalchemy as sa
from alembic import op

from integration import idset
from integration.items import pack_samples, unpack_samples
from integration.known import segment_rows

revision = "0009_packed_known"
down_revision = "0008_crowds"
branch_labels = None
depends_on = None

BATCH = 200  # watches per batch: bounds the memory a watch with many known ids takes

watches = sa.table("watches", sa.column("id", sa.Integer), sa.column("top_ids", sa.Text),
                   sa.column("baseline", sa.Text), sa.column("top_packed", sa.LargeBinary),
                   sa.column("samples", sa.LargeBinary))
known_accounts = sa.table("known_accounts", sa.column("watch_id", sa.Integer), sa.column("account_id", sa.String))
segments = sa.table("known_segments", sa.column("watch_id", sa.Integer), sa.column("low", sa.BigInteger),
                    sa.column("ids", sa.LargeBinary))
text_ids = sa.table("known_text_ids", sa.column("watch_id", sa.Integer), sa.column("account_id", sa.String))


def _batches(conn):
    after = 0
    while True:
        ids = conn.execute(sa.select(watches.c.id).where(watches.c.id > after)
                           .order_by(watches.c.id).limit(BATCH)).scalars().all()
        if not ids:
            return
        yield ids
        after = ids[-1]


def _create_id_rows(name: str) -> None:
    """A table of (watch, account id) rows: known_text_ids now, known_accounts as it was."""
    op.create_table(
        name,
        sa.Column("watch_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["watch_id"], ["watches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("watch_id", "account_id"),
        sqlite_with_rowid=False,
    )


def upgrade():
    op.create_table(
        "known_segments",
        sa.Column("watch_id", sa.Integer(), nullable=False),
        sa.Column("low", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ids", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["watch_id"], ["watches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("watch_id", "low"),
    )
    _create_id_rows("known_text_ids")
    op.add_column("watches", sa.Column("top_packed", sa.LargeBinary(), nullable=True))
    op.add_column("watches", sa.Column("samples", sa.LargeBinary(), nullable=True))
    conn = op.get_bind()
    for ids in _batches(conn):
        known: dict[int, list[str]] = {i: [] for i in ids}
        for watch_id, account_id in conn.execute(sa.select(known_accounts.c.watch_id, known_accounts.c.account_id)
                                                 .where(known_accounts.c.watch_id.in_(ids))):
            known[watch_id].append(account_id)
        seg_rows, text_rows = [], []
        for watch_id, accounts in known.items():
            numbers, others = idset.partition(accounts)
            if numbers:
                seg_rows += segment_rows(watch_id, numbers)
            text_rows += [{"watch_id": watch_id, "account_id": a} for a in sorted(others)]
        if seg_rows:
            conn.execute(segments.insert(), seg_rows)
        if text_rows:
            conn.execute(text_ids.insert(), text_rows)
        for watch_id, top_ids, baseline in conn.execute(
                sa.select(watches.c.id, watches.c.top_ids, watches.c.baseline).where(watches.c.id.in_(ids))).all():
            page = json.loads(baseline or "[]")
            conn.execute(watches.update().where(watches.c.id == watch_id).values(
                top_packed=idset.pack_list(json.loads(top_ids or "[]")) or None,
                samples=pack_samples(page) if page else None))
    op.drop_table("known_accounts")
    op.execute("ALTER TABLE watches DROP COLUMN baseline")
    op.execute("ALTER TABLE watches DROP COLUMN top_ids")
    op.execute("ALTER TABLE watches RENAME COLUMN top_packed TO top_ids")


def downgrade():
    _create_id_rows("known_accounts")
    op.execute("ALTER TABLE watches RENAME COLUMN top_ids TO top_packed")
    op.add_column("watches", sa.Column("top_ids", sa.Text(), server_default="[]", nullable=False))
    op.add_column("watches", sa.Column("baseline", sa.Text(), server_default="[]", nullable=False))
    conn = op.get_bind()
    for ids in _batches(conn):
        rows = [{"watch_id": w, "account_id": str(n)} for w, blob in conn.execute(
            sa.select(segments.c.watch_id, segments.c.ids).where(segments.c.watch_id.in_(ids)))
            for n in idset.unpack(blob)]
        rows += [{"watch_id": w, "account_id": a} for w, a in conn.execute(
            sa.select(text_ids.c.watch_id, text_ids.c.account_id).where(text_ids.c.watch_id.in_(ids)))]
        if rows:
            conn.execute(known_accounts.insert(), rows)
        for watch_id, top_packed, samples in conn.execute(
                sa.select(watches.c.id, watches.c.top_packed, watches.c.samples).where(watches.c.id.in_(ids))).all():
            conn.execute(watches.update().where(watches.c.id == watch_id).values(
                top_ids=json.dumps(list(idset.unpack_list(top_packed))), baseline=json.dumps(unpack_samples(samples))))
    op.drop_table("known_text_ids")
    op.drop_table("known_segments")
    op.execute("ALTER TABLE watches DROP COLUMN samples")
    op.execute("ALTER TABLE watches DROP COLUMN top_packed")
