"""users, session activity, message ids, reply-to and reply provenance

Conversations now belong to a row of ``users`` (made from the distinct channel and external id pairs of the
existing conversations), carry their last activity, and messages gain the channel's message id and the id of the
message a reply answers (for stored bot replies: the user message before it). ``reply_provenance`` starts empty:
replies stored before this revision have no record of how they were made.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _create_users()
    _conversations_belong_to_users()
    _messages_gain_ids_and_reply_to()
    op.create_table(
        "reply_provenance",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("decoding", sa.JSON(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_reply_provenance_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_reply_provenance")),
    )


def _create_users() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("display_name", sa.String(length=255), nullable=True),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("channel", "external_id", name=op.f("uq_users_channel")),
    )
    # Every existing conversation's owner becomes a user, first seen when their first conversation started.
    op.execute(
        "INSERT INTO users (channel, external_id, display_name, blocked, settings, created_at) "
        "SELECT channel, external_id, NULL, FALSE, '{}', MIN(started_at) FROM conversations "
        "GROUP BY channel, external_id ORDER BY MIN(id)"
    )


def _conversations_belong_to_users() -> None:
    with op.batch_alter_table("conversations") as batch_op:
        batch_op.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE conversations SET "
        "user_id = (SELECT users.id FROM users WHERE users.channel = conversations.channel "
        "AND users.external_id = conversations.external_id), "
        "last_activity_at = COALESCE((SELECT MAX(messages.created_at) FROM messages "
        "WHERE messages.conversation_id = conversations.id), started_at)"
    )
    with op.batch_alter_table("conversations") as batch_op:
        batch_op.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("last_activity_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.drop_index("ix_conversations_lookup")
        batch_op.drop_column("channel")
        batch_op.drop_column("external_id")
        batch_op.create_foreign_key(
            op.f("fk_conversations_user_id_users"), "users", ["user_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_index("ix_conversations_user_recent", ["user_id", "id"], unique=False)
        batch_op.create_index("ix_conversations_last_activity", ["last_activity_at"], unique=False)


def _messages_gain_ids_and_reply_to() -> None:
    with op.batch_alter_table("messages") as batch_op:
        batch_op.add_column(sa.Column("channel_message_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reply_to_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_messages_reply_to_id_messages"), "messages", ["reply_to_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_index("ix_messages_channel_message", ["conversation_id", "channel_message_id"], unique=False)
        batch_op.create_index("ix_messages_reply_to", ["reply_to_id"], unique=False)
    # A stored bot reply answered the newest user message before it in its conversation.
    op.execute(
        "UPDATE messages SET reply_to_id = (SELECT MAX(asked.id) FROM messages AS asked "
        "WHERE asked.conversation_id = messages.conversation_id AND asked.id < messages.id "
        "AND asked.role = 'user') WHERE role = 'bot'"
    )


def downgrade() -> None:
    op.drop_table("reply_provenance")
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_index("ix_messages_reply_to")
        batch_op.drop_index("ix_messages_channel_message")
        batch_op.drop_constraint(op.f("fk_messages_reply_to_id_messages"), type_="foreignkey")
        batch_op.drop_column("reply_to_id")
        batch_op.drop_column("channel_message_id")
    with op.batch_alter_table("conversations") as batch_op:
        batch_op.add_column(sa.Column("channel", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("external_id", sa.String(length=255), nullable=True))
    op.execute(
        "UPDATE conversations SET "
        "channel = (SELECT users.channel FROM users WHERE users.id = conversations.user_id), "
        "external_id = (SELECT users.external_id FROM users WHERE users.id = conversations.user_id)"
    )
    with op.batch_alter_table("conversations") as batch_op:
        batch_op.alter_column("channel", existing_type=sa.String(length=32), nullable=False)
        batch_op.alter_column("external_id", existing_type=sa.String(length=255), nullable=False)
        batch_op.drop_index("ix_conversations_last_activity")
        batch_op.drop_index("ix_conversations_user_recent")
        batch_op.drop_constraint(op.f("fk_conversations_user_id_users"), type_="foreignkey")
        batch_op.drop_column("last_activity_at")
        batch_op.drop_column("user_id")
        batch_op.create_index("ix_conversations_lookup", ["channel", "external_id", "id"], unique=False)
    op.drop_table("users")
