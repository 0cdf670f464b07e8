"""The console: users, sessions, login failures, audit log, release requests,
digest links, sender rules, and tokens bound to a user.

Revision ID: web_0001
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa


revision = "web_0001"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("addresses", sa.JSON(), nullable=False),
        sa.Column("digest_every_hours", sa.Integer(), nullable=False),
        sa.Column("digest_last_at", _TIME, nullable=True),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("disabled_at", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_index("ix_web_sessions_expires_at", "web_sessions", ["expires_at"])
    op.create_table(
        "login_failures",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("username", "client_ip", "at"):
        op.create_index(f"ix_login_failures_{column}", "login_failures", [column])
    op.create_table(
        "audit_log",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("at", "actor", "action", "target"):
        op.create_index(f"ix_audit_log_{column}", "audit_log", [column])
    op.create_table(
        "release_requests",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("quarantine_id", sa.String(32), nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("requested_at", _TIME, nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=False),
        sa.Column("decided_at", _TIME, nullable=True),
        sa.ForeignKeyConstraint(["quarantine_id"], ["quarantine.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_release_requests_quarantine_id", "release_requests",
                    ["quarantine_id"])
    op.create_index("ix_release_requests_status", "release_requests", ["status"])
    op.create_table(
        "digest_links",
        sa.Column("nonce", sa.String(43), nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("quarantine_id", sa.String(32), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("used_at", _TIME, nullable=True),
        sa.ForeignKeyConstraint(["quarantine_id"], ["quarantine.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("nonce"),
    )
    op.create_index("ix_digest_links_user_id", "digest_links", ["user_id"])
    op.create_index("ix_digest_links_quarantine_id", "digest_links", ["quarantine_id"])
    op.create_index("ix_digest_links_expires_at", "digest_links", ["expires_at"])
    op.create_table(
        "sender_rules",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "sender", "recipient"),
    )
    op.create_index("ix_sender_rules_sender", "sender_rules", ["sender"])
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("user_id", _ID, nullable=True))
        batch.create_index("ix_api_tokens_user_id", ["user_id"])
        batch.create_foreign_key("fk_api_tokens_user_id", "users", ["user_id"], ["id"],
                                 ondelete="CASCADE")


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_constraint("fk_api_tokens_user_id", type_="foreignkey")
        batch.drop_index("ix_api_tokens_user_id")
        batch.drop_column("user_id")
    for table in ("sender_rules", "digest_links", "release_requests", "audit_log",
                  "login_failures", "web_sessions", "users"):
        op.drop_table(table)
