"""inbox: each update a channel receives, committed before the platform is told it arrived, until its reply is
delivered (received -> answered -> delivered, or failed)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 13:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    moment = sa.DateTime(timezone=True)
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("bot", sa.String(length=64), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("chat", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("received_at", moment, nullable=False),
        sa.Column("due_at", moment, nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=True),
        sa.Column("lease_until", moment, nullable=True),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.Column("reply_text", sa.Text(), nullable=True),
        sa.Column("reply_fixed_width", sa.Boolean(), nullable=False),
        sa.Column("reply_turn_id", sa.Integer(), nullable=True),
        sa.Column("answered_at", moment, nullable=True),
        sa.Column("parts_sent", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", moment, nullable=True),
        sa.CheckConstraint("state IN ('received', 'answered', 'delivered', 'failed')", name=op.f("ck_inbox_state")),
        sa.ForeignKeyConstraint(
            ["reply_turn_id"], ["messages.id"], name=op.f("fk_inbox_reply_turn_id_messages"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox")),
        sa.UniqueConstraint("channel", "bot", "update_id", name=op.f("uq_inbox_channel")),
    )
    op.create_index("ix_inbox_unfinished", "inbox", ["channel", "bot", "state", "chat", "id"])
    op.create_index("ix_inbox_finished", "inbox", ["finished_at"])
    op.create_index("ix_inbox_reply_turn", "inbox", ["reply_turn_id"])


def downgrade() -> None:
    op.drop_table("inbox")
