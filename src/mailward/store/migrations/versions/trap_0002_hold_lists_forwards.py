"""Pulled copies held in the quarantine, list-expanded copies, forward links.

Revision ID: trap_0002
Revises: trap_0001
Create Date: 2026-12-03 18:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = "trap_0002"
down_revision = "trap_0001"
branch_labels = None
depends_on = None

_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("quarantine", sa.Column("copy_id", sa.Integer(), nullable=True))
    op.create_index("ix_quarantine_copy_id", "quarantine", ["copy_id"])
    op.add_column("quarantine", sa.Column("incident_id", sa.Integer(), nullable=True))
    op.add_column("quarantine", sa.Column("origin_folder", sa.String(255), nullable=False,
                                          server_default=""))
    op.add_column("quarantine", sa.Column("flags", sa.JSON(), nullable=False,
                                          server_default="[]"))
    op.add_column("quarantine", sa.Column("internal_date", sa.Float(), nullable=False,
                                          server_default="0"))
    op.add_column("copies", sa.Column("via", sa.String(320), nullable=False,
                                      server_default=""))
    op.add_column("deliveries", sa.Column("via", sa.String(320), nullable=False,
                                          server_default=""))
    op.create_table(
        "forward_links",
        sa.Column("id", _id, primary_key=True, autoincrement=True),
        sa.Column("queue_id", sa.String(32),
                  sa.ForeignKey("messages.queue_id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("original_queue_id", sa.String(32), nullable=False, index=True),
        sa.Column("forwarder", sa.String(320), nullable=False),
        sa.Column("matched_by", sa.String(32), nullable=False),
        sa.Column("linked_at", _time, nullable=False),
        sa.UniqueConstraint("queue_id", "original_queue_id"),
    )


def downgrade() -> None:
    op.drop_table("forward_links")
    op.drop_column("deliveries", "via")
    op.drop_column("copies", "via")
    op.drop_index("ix_quarantine_copy_id", "quarantine")
    for column in ("internal_date", "flags", "origin_folder", "incident_id", "copy_id"):
        op.drop_column("quarantine", column)
