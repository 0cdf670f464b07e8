"""User reports: reported campaigns, reports and the actions on copies.

Revision ID: reports_0001
Revises: 0001
Create Date: 2026-12-03 15:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = "reports_0001"
down_revision = "0001"
branch_labels = ("reports",)
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "report_clusters",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("created_at", When, nullable=False),
        sa.Column("subject_key", sa.String(64), nullable=False),
        sa.Column("body_key", sa.String(64), nullable=False),
        sa.Column("queue_ids", sa.JSON(), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("simulation", sa.Boolean(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("decided_at", When, nullable=True),
        sa.Column("acted_at", When, nullable=True),
        sa.Column("first_delivered_at", When, nullable=True),
    )
    op.create_index("ix_report_clusters_created_at", "report_clusters", ["created_at"])
    op.create_index("ix_report_clusters_subject_key", "report_clusters", ["subject_key"])
    op.create_index("ix_report_clusters_body_key", "report_clusters", ["body_key"])
    op.create_index("ix_report_clusters_status", "report_clusters", ["status"])
    op.create_table(
        "user_reports",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("reporter", sa.String(320), nullable=False),
        sa.Column("reported_at", When, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("queue_id", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(998), nullable=False),
        sa.Column("matched_by", sa.String(32), nullable=False),
        sa.Column("cluster_id", BigId, sa.ForeignKey("report_clusters.id", ondelete="SET NULL"),
                  nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("delivered_at", When, nullable=True),
        sa.Column("notified_at", When, nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_user_reports_reporter_time", "user_reports", ["reporter", "reported_at"])
    op.create_index("ix_user_reports_reported_at", "user_reports", ["reported_at"])
    op.create_index("ix_user_reports_queue_id", "user_reports", ["queue_id"])
    op.create_index("ix_user_reports_cluster_id", "user_reports", ["cluster_id"])
    op.create_index("ix_user_reports_status", "user_reports", ["status"])
    op.create_table(
        "report_actions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("cluster_id", BigId, sa.ForeignKey("report_clusters.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("queue_id", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("from_folder", sa.String(255), nullable=False),
        sa.Column("to_folder", sa.String(255), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("at", When, nullable=False),
    )
    op.create_index("ix_report_actions_cluster_id", "report_actions", ["cluster_id"])
    op.create_index("ix_report_actions_queue_id", "report_actions", ["queue_id"])
    op.create_index("ix_report_actions_at", "report_actions", ["at"])


def downgrade() -> None:
    op.drop_table("report_actions")
    op.drop_table("user_reports")
    op.drop_table("report_clusters")
