"""Protected people (VIPs) for impostor detection.

Revision ID: impostor_0001
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = "impostor_0001"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "protected_people",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("addresses", sa.JSON(), nullable=False),
        sa.Column("role", sa.String(length=200), nullable=False),
        sa.Column("aliases", sa.JSON(), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("protected_people", schema=None) as batch_op:
        batch_op.create_index("ix_protected_people_name", ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("protected_people", schema=None) as batch_op:
        batch_op.drop_index("ix_protected_people_name")
    op.drop_table("protected_people")
