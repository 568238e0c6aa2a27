"""The database schema, declared once in SQLAlchemy 2 style; Alembic migrations create and change it.

Users (one per channel and external id) have conversations (sessions); conversations have messages. A bot
message that answers a user message points at it (``reply_to_id``) and carries its ReplyProvenance: which model,
decoding settings, score and latency produced it. Incoming messages keep the channel's own message id, which is
how a message delivered twice (a restart before the channel confirmed it) is recognised.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import true

# Named constraints make migrations portable: SQLite batch mode can only drop a constraint it can name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """The declarative base; its metadata is Alembic's target."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A user or group chat of one channel, with their per-user decoding settings (a JSON object).

    ``blocked``: the operator blocked them (``chatbot db block``); they are neither answered nor stored.
    ``active``: false once they blocked the bot (the channel refused to deliver to them), true when they write again.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    blocked: Mapped[bool]
    active: Mapped[bool] = mapped_column(server_default=true())
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (UniqueConstraint("channel", "external_id"),)


class Conversation(Base):
    """One session of a user; ``/reset`` or an idle timeout ends it and the next message opens a new one."""

    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_activity_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # The open conversation of a user is the newest one: found by walking this index backwards.
        Index("ix_conversations_user_recent", "user_id", "id"),
        Index("ix_conversations_last_activity", "last_activity_at"),  # what `chatbot db prune` scans
    )


class Message(Base):
    """One turn of a conversation, by the user or the bot.

    ``channel_message_id`` is the channel's id of the message: for a user's message, the id it arrived with; for
    a bot's reply, the id the channel gave it once delivered (None until then, and on channels without ids).
    """

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    channel_message_id: Mapped[str | None] = mapped_column(String(64))
    reply_to_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))

    __table_args__ = (
        CheckConstraint("role IN ('user', 'bot')", name="role"),
        # Reading the last N turns walks this index backwards, whatever the conversation's length.
        Index("ix_messages_conversation_recent", "conversation_id", "id"),
        # Was this incoming message seen before? One probe per conversation of the user.
        Index("ix_messages_channel_message", "conversation_id", "channel_message_id"),
        Index("ix_messages_reply_to", "reply_to_id"),
    )


class ReplyProvenance(Base):
    """Why a bot message says what it says: the model (name and weights hash), the decoding settings used, the
    reply's score (its confidence, the geometric-mean probability of its pieces), the generation latency, and
    ``source``: "generated", or the training conversation a retrieved reply came from (None: stored before
    schema 0004 recorded it)."""

    __tablename__ = "reply_provenance"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    model: Mapped[str] = mapped_column(String(255))
    decoding: Mapped[dict[str, Any]] = mapped_column(JSON)
    score: Mapped[float | None] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(String(255))


INBOX_STATES = ("received", "answered", "delivered", "failed")


class InboxEntry(Base):
    """One update a channel received, kept until it is answered and the answer delivered (the inbox and outbox).

    An update is committed here before the channel tells its platform it was received, so a process killed at any
    point finds it again at its next start. Its ``state`` goes ``received`` -> ``answered`` (the reply is in the
    ``reply_*`` columns, waiting to be sent) -> ``delivered``; or ``failed`` when the reply could not be delivered
    in time, or the chat refuses the bot. A worker claims a row by leasing it (``worker``, ``lease_until``); a lease
    that runs out (its worker died) frees the row for another. ``chat`` orders the work: only the oldest unfinished
    row of a chat may be claimed, so each chat's messages are answered, and their replies sent, in order.
    ``due_at``: not to be claimed before (a reply waiting to be tried again). Once a row is finished its update and
    reply are cleared (``payload`` and ``reply_text`` NULL): only the ids stay, to recognise the update if the
    platform sends it again, until ``chatbot`` prunes the row.
    """

    __tablename__ = "inbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    bot: Mapped[str] = mapped_column(String(64))  # which bot of the channel received it (Telegram: the bot's id)
    update_id: Mapped[int] = mapped_column(BigInteger)
    chat: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    worker: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claims: Mapped[int] = mapped_column(Integer)
    reply_text: Mapped[str | None] = mapped_column(Text)
    reply_fixed_width: Mapped[bool] = mapped_column(Boolean)
    reply_turn_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    parts_sent: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint("state IN ('received', 'answered', 'delivered', 'failed')", name="state"),
        UniqueConstraint("channel", "bot", "update_id"),  # an update sent twice is stored once
        # The unfinished rows of a bot, by chat: the oldest of each is what a worker may claim (covering the query).
        Index("ix_inbox_unfinished", "channel", "bot", "state", "chat", "id"),
        Index("ix_inbox_finished", "finished_at"),  # what pruning deletes
        Index("ix_inbox_reply_turn", "reply_turn_id"),
    )
