"""Records: the plain, frozen values the conversation store hands out and takes in, free of any database type."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chatbot.dialogue.types import Turn


@dataclass(frozen=True)
class StoredUser:
    """A user as the dialogue manager needs them: id, whether blocked, and their settings (a JSON object)."""

    id: int
    blocked: bool
    settings: dict[str, Any]


@dataclass(frozen=True)
class Provenance:
    """How a reply was made: model name and weights hash, every decoding setting, its score, the latency, and
    where its words came from ("generated", or the id of the training conversation a retrieved reply came from)."""

    model: str
    decoding: dict[str, Any]
    score: float | None
    latency_ms: float
    source: str | None = None


@dataclass(frozen=True)
class ProvenReply:
    """A stored generated reply: its text, how it was made, and the id of the user turn it answered (None for
    replies stored before schema 0002 recorded it)."""

    text: str
    provenance: Provenance
    reply_to_id: int | None


@dataclass(frozen=True)
class EarlierMessage:
    """An incoming message that was stored before under the same channel message id, and the reply stored to it,
    if any (``reply_delivered``: the channel confirmed sending that reply)."""

    conversation_id: int
    turn_id: int
    reply_id: int | None
    reply_text: str | None
    reply_delivered: bool


@dataclass(frozen=True)
class StoredConversation:
    """A whole stored conversation, as ``chatbot export`` writes it."""

    id: int
    channel: str
    external_id: str
    started_at: datetime
    turns: tuple[Turn, ...]

    @property
    def export_id(self) -> str:
        """The id exports and training use: stable, and unique across channels and sessions."""
        return f"{self.channel}:{self.external_id}:{self.id}"


@dataclass(frozen=True)
class Selection:
    """Which conversations to read: one channel, one user or chat of it, and a range of start times (any of them
    None: no restriction). Times are timezone-aware."""

    channel: str | None = None
    external_id: str | None = None
    started_from: datetime | None = None
    started_before: datetime | None = None


@dataclass(frozen=True)
class DatabaseStats:
    """Counts of what is stored, and the time span of the messages (ISO 8601, or None when there are none);
    ``inbox``: the channels' inbox rows by state (received and answered ones are still to be finished)."""

    conversations: int
    open_conversations: int
    users: int
    blocked_users: int
    inactive_users: int
    messages: int
    user_messages: int
    bot_messages: int
    conversations_per_channel: dict[str, int]
    first_message_at: str | None
    last_message_at: str | None
    inbox: dict[str, int]
