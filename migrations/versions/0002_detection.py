"""exact detection: the watermark's exclusivity and the last safe mode

Existing watches get `watermark_exclusive = true`: their last refresh used the old
rule (only follows strictly newer than the watermark), which is the safe reading
until their next refresh recomputes it.

Revision ID: 0002_detection
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002_detection"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("watches") as batch:
        batch.add_column(sa.Column("watermark_exclusive", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch.add_column(sa.Column("detection_mode", sa.String(length=32), nullable=True))


def downgrade():
    with op.batch_alter_table("watches") as batch:
        batch.drop_column("detection_mode")
        batch.drop_column("watermark_exclusive")
