"""Why a release request was closed without a decision.

Revision ID: web_0002
Revises: web_0001
Create Date: 2026-12-04 03:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = "web_0002"
down_revision = "web_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("release_requests", sa.Column("reason", sa.String(300), nullable=False,
                                                server_default=""))
    # Requests left pending on mail that had already left the quarantine.
    op.execute("UPDATE release_requests SET status = 'closed', "
               "reason = 'the message had left the quarantine' WHERE status = 'pending' "
               "AND quarantine_id IN (SELECT id FROM quarantine WHERE status <> 'held')")


def downgrade() -> None:
    op.drop_column("release_requests", "reason")
