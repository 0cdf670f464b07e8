"""DMARC evaluations, for aggregate reports.

Revision ID: auth_0001
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = "auth_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dmarc_evaluations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=False),
        sa.Column("header_from", sa.String(length=255), nullable=False),
        sa.Column("envelope_from", sa.String(length=255), nullable=False),
        sa.Column("policy_domain", sa.String(length=255), nullable=False),
        sa.Column("p", sa.String(length=16), nullable=False),
        sa.Column("sp", sa.String(length=16), nullable=False),
        sa.Column("pct", sa.Integer(), nullable=False),
        sa.Column("adkim", sa.String(length=1), nullable=False),
        sa.Column("aspf", sa.String(length=1), nullable=False),
        sa.Column("rua", sa.Text(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("disposition", sa.String(length=16), nullable=False),
        sa.Column("dkim_aligned", sa.Boolean(), nullable=False),
        sa.Column("spf_aligned", sa.Boolean(), nullable=False),
        sa.Column("override", sa.String(length=32), nullable=False),
        sa.Column("override_comment", sa.Text(), nullable=False),
        sa.Column("spf_domain", sa.String(length=255), nullable=False),
        sa.Column("spf_result", sa.String(length=16), nullable=False),
        sa.Column("dkim_results", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dmarc_evaluations", schema=None) as batch_op:
        batch_op.create_index("ix_dmarc_evaluations_queue_id", ["queue_id"], unique=False)
        batch_op.create_index("ix_dmarc_evaluations_domain_time",
                              ["policy_domain", "evaluated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dmarc_evaluations", schema=None) as batch_op:
        batch_op.drop_index("ix_dmarc_evaluations_domain_time")
        batch_op.drop_index("ix_dmarc_evaluations_queue_id")
    op.drop_table("dmarc_evaluations")
