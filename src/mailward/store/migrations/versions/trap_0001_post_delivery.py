"""Post-delivery response: retractions, incidents, campaign rules, feed cursors.

Revision ID: trap_0001
Revises: 0001
Create Date: 2026-12-03 15:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = "trap_0001"
down_revision = "0001"
branch_labels = ("trap",)
depends_on = None

_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "retractions",
        sa.Column("id", _id, primary_key=True, autoincrement=True),
        sa.Column("copy_id", _id, sa.ForeignKey("copies.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("queue_id", sa.String(32), nullable=False, index=True),
        sa.Column("recipient", sa.String(320), nullable=False, index=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("was_read", sa.Boolean(), nullable=True),
        sa.Column("from_folder", sa.String(255), nullable=False),
        sa.Column("to_folder", sa.String(255), nullable=False),
        sa.Column("native_before", sa.String(512), nullable=False),
        sa.Column("native_after", sa.String(512), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=True, index=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("started_at", _time, nullable=False),
        sa.Column("finished_at", _time, nullable=True),
    )
    op.create_table(
        "incidents",
        sa.Column("id", _id, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(512), nullable=False, unique=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("indicator_type", sa.String(16), nullable=False),
        sa.Column("indicator_value", sa.String(2048), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("assessment", sa.String(32), nullable=False, index=True),
        sa.Column("opened_at", _time, nullable=False, index=True),
        sa.Column("updated_at", _time, nullable=False),
        sa.Column("closed_at", _time, nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("history", sa.JSON(), nullable=False),
    )
    op.create_table(
        "incident_copies",
        sa.Column("id", _id, primary_key=True, autoincrement=True),
        sa.Column("incident_id", _id, sa.ForeignKey("incidents.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("copy_id", _id, sa.ForeignKey("copies.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("matched_on", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("pulled_at", _time, nullable=True),
        sa.Column("was_read", sa.Boolean(), nullable=True),
        sa.Column("found_at", _time, nullable=False),
        sa.UniqueConstraint("incident_id", "copy_id"),
    )
    op.create_table(
        "campaign_rules",
        sa.Column("id", _id, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.Integer(), nullable=True, index=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.JSON(), nullable=False),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("created_at", _time, nullable=False),
        sa.Column("expires_at", _time, nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "message_fingerprints",
        sa.Column("queue_id", sa.String(32),
                  sa.ForeignKey("messages.queue_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tlsh", sa.String(80), nullable=False, index=True),
    )
    op.create_table(
        "feed_state",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("cursor", sa.Text(), nullable=False),
        sa.Column("polled_at", _time, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ("feed_state", "message_fingerprints", "campaign_rules",
                  "incident_copies", "incidents", "retractions"):
        op.drop_table(table)
