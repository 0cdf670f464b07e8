"""Restores on incident copies, and which refresh of an indicator was scanned.

Revision ID: trap_0003
Revises: trap_0002
Create Date: 2026-12-03 19:45:00
"""

from alembic import op
import sqlalchemy as sa


revision = "trap_0003"
down_revision = "trap_0002"
branch_labels = None
depends_on = None

_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("incident_copies", sa.Column("restored_at", _time, nullable=True))
    op.add_column("incident_copies", sa.Column("restored_by", sa.String(200),
                                               nullable=False, server_default=""))
    op.add_column("indicators", sa.Column("scanned_at", _time, nullable=True))


def downgrade() -> None:
    op.drop_column("indicators", "scanned_at")
    op.drop_column("incident_copies", "restored_by")
    op.drop_column("incident_copies", "restored_at")
