"""Maintenance: what the database holds (``chatbot db stats``) and retention (``chatbot db prune``).

Pruning deletes whole conversations whose last activity — their newest message, or their start when they have
none — is older than a cut-off; their messages go with them (the foreign key cascades). Functions take a session
the caller opened, so the caller decides the transaction: a prune either happens entirely or not at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from chatbot.errors import ChatbotError
from chatbot.storage import models
from chatbot.storage.store import delete_conversations, messages_in

DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m`` or ``2w`` as a timedelta; anything else is a one-line error."""
    match = DURATION.match(text)
    if match is None:
        raise ChatbotError(f"{text!r} is not a duration: write a number and a unit, such as 30d, 12h, 90m or 2w")
    return int(match.group(1)) * UNITS[match.group(2)]


@dataclass(frozen=True)
class DatabaseStats:
    """Counts of what is stored, and the time span of the messages (ISO 8601, or None when there are none)."""

    conversations: int
    open_conversations: int
    users: int
    messages: int
    user_messages: int
    bot_messages: int
    conversations_per_channel: dict[str, int]
    first_message_at: str | None
    last_message_at: str | None


def database_stats(session: Session) -> DatabaseStats:
    conversation, message = models.Conversation, models.Message
    users = select(conversation.channel, conversation.external_id).distinct().subquery()
    by_role = {
        role: count for role, count in session.execute(select(message.role, func.count()).group_by(message.role))
    }
    per_channel = {
        channel: count
        for channel, count in session.execute(select(conversation.channel, func.count()).group_by(conversation.channel))
    }
    first, last = session.execute(select(func.min(message.created_at), func.max(message.created_at))).one()
    return DatabaseStats(
        conversations=session.scalar(select(func.count()).select_from(conversation)) or 0,
        open_conversations=session.scalar(select(func.count()).where(conversation.ended_at.is_(None))) or 0,
        users=session.scalar(select(func.count()).select_from(users)) or 0,
        messages=sum(by_role.values()),
        user_messages=by_role.get("user", 0),
        bot_messages=by_role.get("bot", 0),
        conversations_per_channel=per_channel,
        first_message_at=first.isoformat() if first else None,
        last_message_at=last.isoformat() if last else None,
    )


@dataclass(frozen=True)
class PruneResult:
    conversations: int
    messages: int


def _stale(cutoff: datetime) -> Select[Any]:
    """The ids of conversations whose last activity is before ``cutoff``."""
    conversation, message = models.Conversation, models.Message
    last_message = (
        select(func.max(message.created_at)).where(message.conversation_id == conversation.id).scalar_subquery()
    )
    return select(conversation.id).where(func.coalesce(last_message, conversation.started_at) < cutoff)


def prune(session: Session, older_than: timedelta, now: datetime, dry_run: bool = False) -> PruneResult:
    """Delete (or with ``dry_run`` only count) the conversations last active more than ``older_than`` before
    ``now``, with their messages.

    Messages go first; that leaves the stale set unchanged (a stale conversation's start is older still), so the
    same query then selects the conversations, without a list of ids as large as the database.
    """
    stale = _stale(now - older_than)
    conversations = session.scalar(select(func.count()).select_from(stale.subquery())) or 0
    messages = messages_in(session, stale)
    if conversations and not dry_run:
        delete_conversations(session, stale)
    return PruneResult(conversations=conversations, messages=messages)
