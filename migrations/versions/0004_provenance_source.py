"""reply_provenance.source: where a reply's words came from, generated or a retrieved training conversation's id

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 09:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reply_provenance") as batch_op:
        batch_op.add_column(sa.Column("source", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reply_provenance") as batch_op:
        batch_op.drop_column("source")
