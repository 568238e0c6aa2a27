"""ConversationStore: the small interface the dialogue manager stores turns through, with SQL and memory twins.

The caller owns the transaction: it opens one with a ``Transaction`` (``sql_transaction(factory)`` or
``MemoryStore.transaction``), does its reads and writes through the store it is handed, and the transaction commits
when the ``with`` block ends (or rolls back on an exception).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from chatbot.dialogue.types import Role, Turn
from chatbot.errors import StorageError
from chatbot.storage import engine, models


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

    def picks(self, channel: str, external_id: str, started_at: datetime) -> bool:
        return (
            self.channel in (None, channel)
            and self.external_id in (None, external_id)
            and (self.started_from is None or started_at >= self.started_from)
            and (self.started_before is None or started_at < self.started_before)
        )


class ConversationStore(Protocol):
    """Reads and writes of one transaction."""

    def current_conversation(self, channel: str, external_id: str) -> int:
        """The id of the open conversation of this channel's user or chat, starting one if there is none."""
        ...

    def end_conversation(self, conversation_id: int) -> None:
        """Close a conversation so the next message starts a new one."""
        ...

    def add_turn(self, conversation_id: int, turn: Turn) -> None:
        """Append a turn to a conversation."""
        ...

    def recent_turns(self, conversation_id: int, limit: int) -> list[Turn]:
        """The last ``limit`` turns of a conversation, oldest first."""
        ...

    def last_activity(self, conversation_id: int) -> datetime:
        """When the conversation's newest turn was stored (its start, while it has none)."""
        ...

    def forget(self, channel: str, external_id: str) -> int:
        """Delete every conversation of this channel's user or chat, with all turns; returns the turns deleted."""
        ...

    def conversations(self, selection: Selection | None = None) -> Iterator[StoredConversation]:
        """Every stored conversation with its turns, in the order they started (those ``selection`` picks)."""
        ...


Transaction = Callable[[], AbstractContextManager[ConversationStore]]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes for what was stored as UTC; Postgres keeps the zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


class SqlConversationStore:
    """ConversationStore over a SQLAlchemy session that the caller opened and will commit."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def current_conversation(self, channel: str, external_id: str) -> int:
        query = (
            select(models.Conversation.id)
            .where(models.Conversation.channel == channel, models.Conversation.external_id == external_id)
            .where(models.Conversation.ended_at.is_(None))
            .order_by(models.Conversation.id.desc())
            .limit(1)
        )
        found = self.session.scalar(query)
        if found is not None:
            return found
        conversation = models.Conversation(channel=channel, external_id=external_id, started_at=_now())
        self.session.add(conversation)
        self.session.flush()
        return conversation.id

    def end_conversation(self, conversation_id: int) -> None:
        conversation = self.session.get(models.Conversation, conversation_id)
        if conversation is not None and conversation.ended_at is None:
            conversation.ended_at = _now()

    def add_turn(self, conversation_id: int, turn: Turn) -> None:
        self.session.add(
            models.Message(conversation_id=conversation_id, role=turn.role.value, text=turn.text, created_at=_now())
        )
        self.session.flush()

    def recent_turns(self, conversation_id: int, limit: int) -> list[Turn]:
        # Newest first through the (conversation_id, id) index, so the cost does not grow with the conversation.
        query = (
            select(models.Message.role, models.Message.text)
            .where(models.Message.conversation_id == conversation_id)
            .order_by(models.Message.id.desc())
            .limit(limit)
        )
        rows = self.session.execute(query).all()
        return [Turn(Role(role), text) for role, text in reversed(rows)]

    def last_activity(self, conversation_id: int) -> datetime:
        newest = self.session.scalar(
            select(models.Message.created_at)
            .where(models.Message.conversation_id == conversation_id)
            .order_by(models.Message.id.desc())
            .limit(1)
        )
        if newest is None:
            newest = self.session.scalar(
                select(models.Conversation.started_at).where(models.Conversation.id == conversation_id)
            )
        return _aware(newest) if newest is not None else _now()

    def forget(self, channel: str, external_id: str) -> int:
        theirs = select(models.Conversation.id).where(
            models.Conversation.channel == channel, models.Conversation.external_id == external_id
        )
        count = messages_in(self.session, theirs)
        delete_conversations(self.session, theirs)
        return count

    def conversations(self, selection: Selection | None = None) -> Iterator[StoredConversation]:
        query, chosen, table = (
            select(models.Conversation).order_by(models.Conversation.id),
            selection,
            models.Conversation,
        )
        if chosen is not None and chosen.channel is not None:
            query = query.where(table.channel == chosen.channel)
        if chosen is not None and chosen.external_id is not None:
            query = query.where(table.external_id == chosen.external_id)
        if chosen is not None and chosen.started_from is not None:
            query = query.where(table.started_at >= chosen.started_from)
        if chosen is not None and chosen.started_before is not None:
            query = query.where(table.started_at < chosen.started_before)
        for conversation in self.session.scalars(query):
            messages = self.session.scalars(
                select(models.Message)
                .where(models.Message.conversation_id == conversation.id)
                .order_by(models.Message.id)
            )
            turns = tuple(Turn(Role(message.role), message.text) for message in messages)
            yield StoredConversation(
                conversation.id,
                conversation.channel,
                conversation.external_id,
                conversation.started_at,
                turns,
            )


def messages_in(session: Session, conversation_ids: Select[Any]) -> int:
    """How many messages the conversations ``conversation_ids`` (a query of ids) hold."""
    return session.scalar(select(func.count()).where(models.Message.conversation_id.in_(conversation_ids))) or 0


def delete_conversations(session: Session, conversation_ids: Select[Any]) -> None:
    """Delete the conversations that ``conversation_ids`` (a query of ids, run as a subquery, never a list as large
    as the database) selects, their messages first. The query must select the same conversations once their
    messages are gone."""
    unsynchronised = {"synchronize_session": False}  # bulk deletes; no ORM objects of these rows are loaded
    session.execute(
        delete(models.Message).where(models.Message.conversation_id.in_(conversation_ids)),
        execution_options=unsynchronised,
    )
    session.execute(
        delete(models.Conversation).where(models.Conversation.id.in_(conversation_ids)),
        execution_options=unsynchronised,
    )


def sql_transaction(session_factory: sessionmaker[Session]) -> Transaction:
    """A Transaction that opens a session, begins, yields a SqlConversationStore, and commits."""

    @contextmanager
    def transaction() -> Iterator[ConversationStore]:
        try:
            with session_factory.begin() as session:
                yield SqlConversationStore(session)
        except OperationalError as error:  # locked, unreachable, disk full: the database's trouble, not a bug
            url = engine.describe(session_factory.kw["bind"].url)
            reason = str(error.orig or error).strip().splitlines()[0]
            waited = engine.SQLITE_BUSY_TIMEOUT_MS / 1000
            hint = f" (another process holds a write lock; waited {waited:g} s)" if "locked" in reason else ""
            raise StorageError(f"database {url}: {reason}{hint}") from error

    return transaction


@dataclass
class _MemoryConversation:
    channel: str
    external_id: str
    started_at: datetime
    turns: list[Turn] = field(default_factory=list)
    ended: bool = False
    last_active: datetime | None = None


class MemoryStore:
    """ConversationStore kept in a dict: the twin of the SQL store for tests of the layers above.

    ``transaction`` takes a lock for the block, so concurrent callers see each other's writes whole, and restores
    the previous state if the block raises, as a database rollback would.
    """

    def __init__(self, clock: Callable[[], datetime] = _now) -> None:
        self._conversations: dict[int, _MemoryConversation] = {}
        self._lock = threading.RLock()
        self._next_id = 1
        self.clock = clock  # what "now" is for the turns stored here; tests pass a fake one

    @contextmanager
    def transaction(self) -> Iterator[ConversationStore]:
        with self._lock:
            snapshot = copy.deepcopy(self._conversations)
            try:
                yield self
            except BaseException:
                self._conversations = snapshot
                raise

    def current_conversation(self, channel: str, external_id: str) -> int:
        for conversation_id in sorted(self._conversations, reverse=True):
            conversation = self._conversations[conversation_id]
            if (conversation.channel, conversation.external_id, conversation.ended) == (
                channel,
                external_id,
                False,
            ):
                return conversation_id
        conversation_id, self._next_id = self._next_id, self._next_id + 1  # ids are never reused, as in SQL
        self._conversations[conversation_id] = _MemoryConversation(channel, external_id, self.clock())
        return conversation_id

    def end_conversation(self, conversation_id: int) -> None:
        self._conversations[conversation_id].ended = True

    def add_turn(self, conversation_id: int, turn: Turn) -> None:
        self._conversations[conversation_id].turns.append(turn)
        self._conversations[conversation_id].last_active = self.clock()

    def last_activity(self, conversation_id: int) -> datetime:
        conversation = self._conversations[conversation_id]
        return conversation.last_active or conversation.started_at

    def forget(self, channel: str, external_id: str) -> int:
        theirs = [i for i, c in self._conversations.items() if (c.channel, c.external_id) == (channel, external_id)]
        count = sum(len(self._conversations[i].turns) for i in theirs)
        for conversation_id in theirs:
            del self._conversations[conversation_id]
        return count

    def recent_turns(self, conversation_id: int, limit: int) -> list[Turn]:
        return self._conversations[conversation_id].turns[-limit:] if limit > 0 else []

    def conversations(self, selection: Selection | None = None) -> Iterator[StoredConversation]:
        for conversation_id, item in sorted(self._conversations.items()):
            if selection is not None and not selection.picks(item.channel, item.external_id, item.started_at):
                continue
            yield StoredConversation(
                conversation_id, item.channel, item.external_id, item.started_at, tuple(item.turns)
            )
