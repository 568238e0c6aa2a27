"""Maintenance: what the database holds (``chatbot db stats``) and retention (``chatbot db prune``).

Pruning deletes whole conversations whose last activity (their newest message, or their start when they have
none) is older than a cut-off, with their messages and those messages' provenance, and then the users left with
no conversation who were first seen before the cut-off (their settings and display name go with them). Functions
take a session the caller opened, so the caller decides the transaction: a prune happens entirely or not at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Delete, Select, delete, func, select
from sqlalchemy.orm import Session

from chatbot.errors import ChatbotError
from chatbot.storage import models
from chatbot.storage.records import DatabaseStats

DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$")
UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m`` or ``2w`` as a timedelta; anything else is a one-line error."""
    match = DURATION.match(text)
    if match is None:
        raise ChatbotError(f"{text!r} is not a duration: write a number and a unit, such as 30d, 12h, 90m or 2w")
    return int(match.group(1)) * UNITS[match.group(2)]


def database_stats(session: Session) -> DatabaseStats:
    """What ``session``'s database holds: conversations, users and messages counted, the messages' time span, and
    the inbox's rows by state."""
    conversation, message, user = models.Conversation, models.Message, models.User
    by_role = {
        role: count for role, count in session.execute(select(message.role, func.count()).group_by(message.role))
    }
    per_channel = {
        channel: count
        for channel, count in session.execute(
            select(user.channel, func.count())
            .join(conversation, conversation.user_id == user.id)
            .group_by(user.channel)
        )
    }
    first, last = session.execute(select(func.min(message.created_at), func.max(message.created_at))).one()
    inbox = models.InboxEntry
    by_state = dict.fromkeys(models.INBOX_STATES, 0)
    for state, count in session.execute(select(inbox.state, func.count()).group_by(inbox.state)):
        by_state[state] = count
    return DatabaseStats(
        conversations=session.scalar(select(func.count()).select_from(conversation)) or 0,
        open_conversations=session.scalar(select(func.count()).where(conversation.ended_at.is_(None))) or 0,
        users=session.scalar(select(func.count()).select_from(user)) or 0,
        blocked_users=session.scalar(select(func.count()).where(user.blocked.is_(True))) or 0,
        inactive_users=session.scalar(select(func.count()).where(user.active.is_(False))) or 0,
        messages=sum(by_role.values()),
        user_messages=by_role.get("user", 0),
        bot_messages=by_role.get("bot", 0),
        conversations_per_channel=per_channel,
        first_message_at=first.isoformat() if first else None,
        last_message_at=last.isoformat() if last else None,
        inbox=by_state,
    )


def message_count(conversation_ids: Select[Any]) -> Select[int]:
    """The query counting the messages of the conversations ``conversation_ids`` (a query of ids) selects."""
    return select(func.count()).where(models.Message.conversation_id.in_(conversation_ids))


def messages_in(session: Session, conversation_ids: Select[Any]) -> int:
    """How many messages the conversations ``conversation_ids`` (a query of ids) hold."""
    return session.scalar(message_count(conversation_ids)) or 0


def conversation_deletes(conversation_ids: Select[Any]) -> tuple[Delete, ...]:
    """The DELETEs, to run in this order, of the conversations ``conversation_ids`` (a query of ids, run as a
    subquery, never a list as large as the database) selects: those messages' provenance, their messages, then
    the conversations. The query must select the same conversations once their messages are gone."""
    message, provenance = models.Message, models.ReplyProvenance
    theirs = select(message.id).where(message.conversation_id.in_(conversation_ids))
    return (
        delete(provenance).where(provenance.message_id.in_(theirs)),
        delete(message).where(message.conversation_id.in_(conversation_ids)),
        delete(models.Conversation).where(models.Conversation.id.in_(conversation_ids)),
    )


def delete_conversations(session: Session, conversation_ids: Select[Any]) -> None:
    """Delete the conversations ``conversation_ids`` (a query of ids) selects, with their messages and provenance."""
    for statement in conversation_deletes(conversation_ids):  # bulk deletes; no ORM objects of these rows are loaded
        session.execute(statement, execution_options={"synchronize_session": False})


@dataclass(frozen=True)
class PruneResult:
    conversations: int
    messages: int
    users: int


def _stale(cutoff: datetime) -> Select[Any]:
    """The ids of conversations last active before ``cutoff`` (found through the last-activity index)."""
    return select(models.Conversation.id).where(models.Conversation.last_activity_at < cutoff)


def _deserted(cutoff: datetime) -> Select[Any]:
    """The ids of users first seen before ``cutoff`` with no conversation active since: the same users before and
    after the stale conversations are deleted, so a dry run counts what a prune deletes."""
    user, conversation = models.User, models.Conversation
    active = select(conversation.id).where(conversation.user_id == user.id, conversation.last_activity_at >= cutoff)
    return select(user.id).where(user.created_at < cutoff, ~active.exists())


def prune(session: Session, older_than: timedelta, now: datetime, dry_run: bool = False) -> PruneResult:
    """Delete (or with ``dry_run`` only count) the conversations last active more than ``older_than`` before
    ``now``, with their messages, and the users that leaves with nothing."""
    cutoff = now - older_than
    stale = _stale(cutoff)
    conversations = session.scalar(select(func.count()).select_from(stale.subquery())) or 0
    messages = messages_in(session, stale)
    if conversations and not dry_run:
        delete_conversations(session, stale)
    deserted = _deserted(cutoff)
    users = session.scalar(select(func.count()).select_from(deserted.subquery())) or 0
    if users and not dry_run:
        session.execute(
            delete(models.User).where(models.User.id.in_(deserted)), execution_options={"synchronize_session": False}
        )
    return PruneResult(conversations=conversations, messages=messages, users=users)
