"""Initial schema: messages, deliveries, the index, quarantine, intel, tokens.

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-03 11:24:36.634709
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('clicks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('queue_id', sa.String(length=32), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('url_hash', sa.String(length=64), nullable=False),
    sa.Column('clicked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('client_ip', sa.String(length=64), nullable=False),
    sa.Column('user_agent', sa.Text(), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('automated', sa.Boolean(), nullable=False),
    sa.Column('automated_reason', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('clicks', schema=None) as batch_op:
        batch_op.create_index('ix_clicks_queue_id', ['queue_id'], unique=False)
        batch_op.create_index('ix_clicks_url_hash_time', ['url_hash', 'clicked_at'], unique=False)
        batch_op.create_index('ix_clicks_recipient_time', ['recipient', 'clicked_at'], unique=False)

    op.create_table('api_tokens',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('scopes', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('indicators',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=2048), nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('confidence', sa.Integer(), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('type', 'value', 'source')
    )
    with op.batch_alter_table('indicators', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_indicators_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index('ix_indicators_lookup', ['type', 'value'], unique=False)

    op.create_table('ip_reputation',
    sa.Column('ip', sa.String(length=64), nullable=False),
    sa.Column('good', sa.Integer(), nullable=False),
    sa.Column('bad', sa.Integer(), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('ip')
    )
    op.create_table('messages',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('queue_id', sa.String(length=32), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('direction', sa.String(length=16), nullable=False),
    sa.Column('peer_ip', sa.String(length=64), nullable=False),
    sa.Column('helo', sa.String(length=255), nullable=False),
    sa.Column('mail_from', sa.String(length=320), nullable=False),
    sa.Column('header_from', sa.String(length=320), nullable=False),
    sa.Column('recipients', sa.JSON(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=True),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('verdict', sa.JSON(), nullable=False),
    sa.Column('envelope', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('duration_ms', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('queue_id')
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messages_action'), ['action'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_header_from'), ['header_from'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_mail_from'), ['mail_from'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_peer_ip'), ['peer_ip'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_received_at'), ['received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_state'), ['state'], unique=False)

    op.create_table('meta',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('copies',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('queue_id', sa.String(length=32), nullable=False),
    sa.Column('message_id', sa.String(length=998), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('mailbox', sa.String(length=32), nullable=False),
    sa.Column('folder', sa.String(length=255), nullable=False),
    sa.Column('native_id', sa.String(length=512), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('sender_domain', sa.String(length=255), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['queue_id'], ['messages.queue_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('queue_id', 'recipient')
    )
    with op.batch_alter_table('copies', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_copies_delivered_at'), ['delivered_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_copies_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_copies_recipient_sender', ['recipient', 'sender'], unique=False)
        batch_op.create_index(batch_op.f('ix_copies_sender'), ['sender'], unique=False)
        batch_op.create_index(batch_op.f('ix_copies_sender_domain'), ['sender_domain'], unique=False)

    op.create_table('deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('queue_id', sa.String(length=32), nullable=False),
    sa.Column('recipient', sa.String(length=320), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('folder', sa.String(length=64), nullable=False),
    sa.Column('route', sa.String(length=16), nullable=False),
    sa.ForeignKeyConstraint(['queue_id'], ['messages.queue_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('queue_id', 'recipient')
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_due', ['status', 'next_attempt_at'], unique=False)

    op.create_table('message_files',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('queue_id', sa.String(length=32), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('path', sa.Text(), nullable=False),
    sa.Column('content_type', sa.String(length=255), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['queue_id'], ['messages.queue_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('message_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_files_queue_id'), ['queue_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_message_files_sha256'), ['sha256'], unique=False)

    op.create_table('message_urls',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('queue_id', sa.String(length=32), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('url_hash', sa.String(length=64), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['queue_id'], ['messages.queue_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('queue_id', 'url_hash')
    )
    with op.batch_alter_table('message_urls', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_urls_domain'), ['domain'], unique=False)
        batch_op.create_index(batch_op.f('ix_message_urls_url_hash'), ['url_hash'], unique=False)

    op.create_table('quarantine',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('queue_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('recipients', sa.JSON(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('released_by', sa.String(length=320), nullable=False),
    sa.ForeignKeyConstraint(['queue_id'], ['messages.queue_id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_quarantine_category'), ['category'], unique=False)
        batch_op.create_index(batch_op.f('ix_quarantine_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_quarantine_queue_id'), ['queue_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_quarantine_status'), ['status'], unique=False)



def downgrade() -> None:
    op.drop_table('clicks')
    with op.batch_alter_table('quarantine', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_quarantine_status'))
        batch_op.drop_index(batch_op.f('ix_quarantine_queue_id'))
        batch_op.drop_index(batch_op.f('ix_quarantine_created_at'))
        batch_op.drop_index(batch_op.f('ix_quarantine_category'))

    op.drop_table('quarantine')
    with op.batch_alter_table('message_urls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_urls_url_hash'))
        batch_op.drop_index(batch_op.f('ix_message_urls_domain'))

    op.drop_table('message_urls')
    with op.batch_alter_table('message_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_files_sha256'))
        batch_op.drop_index(batch_op.f('ix_message_files_queue_id'))

    op.drop_table('message_files')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_due')

    op.drop_table('deliveries')
    with op.batch_alter_table('copies', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_copies_sender_domain'))
        batch_op.drop_index(batch_op.f('ix_copies_sender'))
        batch_op.drop_index('ix_copies_recipient_sender')
        batch_op.drop_index(batch_op.f('ix_copies_message_id'))
        batch_op.drop_index(batch_op.f('ix_copies_delivered_at'))

    op.drop_table('copies')
    op.drop_table('meta')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_state'))
        batch_op.drop_index(batch_op.f('ix_messages_received_at'))
        batch_op.drop_index(batch_op.f('ix_messages_peer_ip'))
        batch_op.drop_index(batch_op.f('ix_messages_message_id'))
        batch_op.drop_index(batch_op.f('ix_messages_mail_from'))
        batch_op.drop_index(batch_op.f('ix_messages_header_from'))
        batch_op.drop_index(batch_op.f('ix_messages_action'))

    op.drop_table('messages')
    op.drop_table('ip_reputation')
    with op.batch_alter_table('indicators', schema=None) as batch_op:
        batch_op.drop_index('ix_indicators_lookup')
        batch_op.drop_index(batch_op.f('ix_indicators_expires_at'))

    op.drop_table('indicators')
    op.drop_table('api_tokens')
