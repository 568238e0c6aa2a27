"""The storage contract of the dialogue manager: the ``ConversationStore`` protocol, the ``Transaction`` that hands
one out, and the clock that stamps what is stored.

The manager depends on these and on records.py only; store.py's ``SqlStore`` is the one implementation. The caller
owns the transaction: ``with transaction() as store:`` reads and writes through ``store``, commits when the block
ends and rolls back on an exception; transactions.py runs one again when its connection dropped before the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Any, Protocol

from chatbot.dialogue.types import Turn
from chatbot.storage.records import (
    DatabaseStats,
    EarlierMessage,
    Provenance,
    ProvenReply,
    StoredUser,
)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class ConversationStore(Protocol):
    """Reads and writes of one transaction: users, their conversations, the turns and the provenance of each reply."""

    def user(self, channel: str, external_id: str, display_name: str | None = None) -> StoredUser:
        """The user of this channel and external id, created on first sight; their name kept up to date, and a
        user marked unreachable reachable again."""
        ...

    def save_settings(self, user_id: int, settings: dict[str, Any]) -> None:
        """Replace a user's settings object."""
        ...

    def set_active(self, channel: str, external_id: str, active: bool) -> None:
        """Mark a user as reachable or not (the channel refused to deliver to them)."""
        ...

    def current_conversation(self, user_id: int) -> int:
        """The id of the user's open conversation, starting one if there is none."""
        ...

    def end_conversation(self, conversation_id: int) -> None:
        """Close a conversation so the next message starts a new one."""
        ...

    def last_activity(self, conversation_id: int) -> datetime:
        """When the conversation's newest turn was stored (its start, while it has none)."""
        ...

    def add_turn(
        self,
        conversation_id: int,
        turn: Turn,
        channel_message_id: str | None = None,
        reply_to: int | None = None,
        provenance: Provenance | None = None,
    ) -> int:
        """Append a turn to a conversation and return its id."""
        ...

    def recent_turns(self, conversation_id: int, limit: int, through: int | None = None) -> list[Turn]:
        """The last ``limit`` turns of a conversation (up to turn id ``through`` when given), oldest first."""
        ...

    def earlier(self, user_id: int, channel_message_id: str) -> EarlierMessage | None:
        """The user's message stored before with this channel message id, with the reply to it, if any."""
        ...

    def mark_delivered(self, turn_id: int, channel_message_id: str) -> None:
        """Record the channel's id of a sent bot turn: from now on that reply counts as delivered."""
        ...

    def last_provenance(self, conversation_id: int) -> ProvenReply | None:
        """The conversation's newest reply that has a provenance, with it."""
        ...

    def forget(self, channel: str, external_id: str) -> int:
        """Delete the user with everything stored of them; returns the turns deleted."""
        ...

    def stats(self) -> DatabaseStats:
        """Counts of what the whole database holds."""
        ...


Transaction = Callable[[], AbstractContextManager[ConversationStore]]
