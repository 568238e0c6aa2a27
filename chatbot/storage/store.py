"""SqlStore: the ConversationStore (contract.py) over a SQLAlchemy session — users, their conversations, the turns
and the provenance of each reply — and ``sql_transaction``, the Transaction that hands one out.

The caller owns the transaction: ``sql_transaction(factory)`` opens a session and begins (transactions.py), and
the transaction commits when the ``with`` block ends (or rolls back on an exception); the store only uses the
session it is given. Every statement is built once, at import, and run with bound parameters on the session's
connection. Tests use the same store on a SQLite file and on a real Postgres.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVarTuple, Unpack

from sqlalchemy import CursorResult, Executable, Select, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased, sessionmaker

from chatbot.dialogue.types import Role, Turn
from chatbot.storage import maintenance, models
from chatbot.storage.contract import Clock, utc_now
from chatbot.storage.records import (
    DatabaseStats,
    EarlierMessage,
    Provenance,
    ProvenReply,
    Selection,
    StoredConversation,
    StoredUser,
)
from chatbot.storage.transactions import session_transaction

Columns = TypeVarTuple("Columns")


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes for what was stored as UTC; Postgres keeps the zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


# Every statement the store runs, built once and run on the session's connection. Building an ORM statement, or
# flushing an ORM object, per call costs more than SQLite takes to run it: measured with bench/storage.py, prebuilt
# Core statements store a turn in about half the time. Bound parameters of an UPDATE never share a column's name,
# which SQLAlchemy keeps for the SET clause.
_user, _conversation, _message, _provenance = models.User, models.Conversation, models.Message, models.ReplyProvenance
_asked, _answer = aliased(models.Message), aliased(models.Message)
_FIND_USER = select(_user.id, _user.blocked, _user.settings, _user.display_name, _user.active).where(
    _user.channel == bindparam("channel"), _user.external_id == bindparam("external_id")
)
_USER_ID = select(_user.id).where(_user.channel == bindparam("channel"), _user.external_id == bindparam("external_id"))
# Insert-if-absent, so two processes seeing a new user at once both end up with the same row.
_CREATE_USER_SQLITE = sqlite.insert(_user).on_conflict_do_nothing()
_CREATE_USER_POSTGRES = postgresql.insert(_user).on_conflict_do_nothing()
_by_id = _user.id == bindparam("user_id")
_REFRESH_USER = update(_user).where(_by_id).values(active=True, display_name=bindparam("new_name"))
_SAVE_SETTINGS = update(_user).where(_by_id).values(settings=bindparam("new_settings"))
_SET_BLOCKED = update(_user).where(_by_id).values(blocked=bindparam("new_blocked"))
_SET_ACTIVE = (
    update(_user)
    .where(_user.channel == bindparam("of_channel"), _user.external_id == bindparam("of_external_id"))
    .values(active=bindparam("new_active"))
)
_DELETE_USER = delete(_user).where(_by_id)
_THEIR_CONVERSATIONS = select(_conversation.id).where(_conversation.user_id == bindparam("user_id"))
_COUNT_THEIR_MESSAGES = maintenance.message_count(_THEIR_CONVERSATIONS)
_DELETE_THEIR_CONVERSATIONS = maintenance.conversation_deletes(_THEIR_CONVERSATIONS)
_OPEN_CONVERSATION = (
    select(_conversation.id)
    .where(_conversation.user_id == bindparam("user_id"), _conversation.ended_at.is_(None))
    .order_by(_conversation.id.desc())
    .limit(1)
)
_START_CONVERSATION = insert(_conversation).returning(_conversation.id)
_LAST_ACTIVITY = select(_conversation.last_activity_at).where(_conversation.id == bindparam("conversation_id"))
_RECENT_TURNS = (
    select(_message.role, _message.text)
    .where(_message.conversation_id == bindparam("conversation_id"), _message.id <= bindparam("through"))
    .order_by(_message.id.desc())  # newest first through the (conversation_id, id) index: cost independent of length
    .limit(bindparam("limit"))
)
_EARLIER = (
    select(_asked.conversation_id, _asked.id, _answer.id, _answer.text, _answer.channel_message_id)
    .outerjoin(_answer, _answer.reply_to_id == _asked.id)
    .where(
        _asked.conversation_id.in_(select(_conversation.id).where(_conversation.user_id == bindparam("user_id"))),
        _asked.channel_message_id == bindparam("channel_message_id"),
        _asked.role == Role.USER.value,
    )
    .order_by(_asked.id.desc(), _answer.id.desc())
    .limit(1)
)
_ADD_MESSAGE = insert(_message).returning(_message.id)
_ADD_PROVENANCE = insert(_provenance)
_MARK_DELIVERED = (
    update(_message).where(_message.id == bindparam("turn_id")).values(channel_message_id=bindparam("sent_as"))
)
_TOUCH_CONVERSATION = (
    update(_conversation)
    .where(_conversation.id == bindparam("conversation_id"))
    .values(last_activity_at=bindparam("now"))
)
_END_CONVERSATION = (
    update(_conversation)
    .where(_conversation.id == bindparam("conversation_id"), _conversation.ended_at.is_(None))
    .values(ended_at=bindparam("now"))
)
_LAST_PROVENANCE = (
    select(
        _message.text,
        _message.reply_to_id,
        _provenance.model,
        _provenance.decoding,
        _provenance.score,
        _provenance.latency_ms,
        _provenance.source,
    )
    .join(_provenance, _provenance.message_id == _message.id)
    .where(_message.conversation_id == bindparam("conversation_id"))
    .order_by(_message.id.desc())
    .limit(1)
)
_CONVERSATIONS = (
    select(_conversation.id, _user.channel, _user.external_id, _conversation.started_at)
    .join(_user, _user.id == _conversation.user_id)
    .order_by(_conversation.id)
)
_CONVERSATION_TURNS = (
    select(_message.role, _message.text)
    .where(_message.conversation_id == bindparam("conversation_id"))
    .order_by(_message.id)
)
LATEST = 2**31 - 1  # "through" for recent_turns without a bound: the largest id an INTEGER key holds


def _selected(query: Select[Unpack[Columns]], selection: Selection) -> Select[Unpack[Columns]]:
    """``query`` (over conversations joined to users) restricted to ``selection``."""
    if selection.channel is not None:
        query = query.where(_user.channel == selection.channel)
    if selection.external_id is not None:
        query = query.where(_user.external_id == selection.external_id)
    if selection.started_from is not None:
        query = query.where(_conversation.started_at >= selection.started_from)
    if selection.started_before is not None:
        query = query.where(_conversation.started_at < selection.started_before)
    return query


class SqlStore:
    """The ConversationStore of one transaction, over a session the caller opened and will commit; ``clock`` says
    what time it is (tests pass a fake one). Beyond the contract: blocking users and reading whole conversations,
    for the command line and exports."""

    def __init__(self, session: Session, clock: Clock = utc_now) -> None:
        self.session = session
        self.clock = clock

    def _run(self, statement: Executable, values: dict[str, Any]) -> CursorResult[Unpack[tuple[Any, ...]]]:
        """Run a prebuilt Core statement on the session's connection, in the session's transaction."""
        return self.session.connection().execute(statement, values)

    # Users

    def user(self, channel: str, external_id: str, display_name: str | None = None) -> StoredUser:
        """The user of this channel and external id, created on first sight; ``display_name`` (when given) is
        kept up to date, and a user marked inactive is active again (they wrote, so they can be reached)."""
        key = {"channel": channel, "external_id": external_id}
        row = self._run(_FIND_USER, key).first()
        if row is None:
            sqlite_database = self.session.connection().dialect.name == "sqlite"
            create = _CREATE_USER_SQLITE if sqlite_database else _CREATE_USER_POSTGRES
            values: dict[str, Any] = {**key, "display_name": display_name, "blocked": False, "settings": {}}
            values["created_at"] = self.clock()
            self._run(create, values)
            row = self._run(_FIND_USER, key).one()
        user_id, blocked, settings, stored_name, active = row
        renamed = display_name is not None and stored_name != display_name
        if renamed or not active:
            self._run(_REFRESH_USER, {"user_id": user_id, "new_name": display_name if renamed else stored_name})
        return StoredUser(user_id, blocked, dict(settings))

    def save_settings(self, user_id: int, settings: dict[str, Any]) -> None:
        """Replace a user's settings object."""
        self._run(_SAVE_SETTINGS, {"user_id": user_id, "new_settings": settings})

    def set_blocked(self, channel: str, external_id: str, blocked: bool) -> None:
        """Block (or unblock) a user, creating them if they never wrote: a blocked user is neither answered nor
        stored."""
        self._run(_SET_BLOCKED, {"user_id": self.user(channel, external_id).id, "new_blocked": blocked})

    def set_active(self, channel: str, external_id: str, active: bool) -> None:
        """Mark a user as reachable or not (the channel refused to deliver to them: they blocked the bot)."""
        self._run(_SET_ACTIVE, {"of_channel": channel, "of_external_id": external_id, "new_active": active})

    # Conversations

    def current_conversation(self, user_id: int) -> int:
        """The id of the user's open conversation, starting one if there is none."""
        found: int | None = self._run(_OPEN_CONVERSATION, {"user_id": user_id}).scalar()
        if found is not None:
            return found
        now = self.clock()
        values = {"user_id": user_id, "started_at": now, "last_activity_at": now, "ended_at": None}
        started: int = self._run(_START_CONVERSATION, values).scalar_one()
        return started

    def end_conversation(self, conversation_id: int) -> None:
        """Close a conversation so the next message starts a new one."""
        self._run(_END_CONVERSATION, {"conversation_id": conversation_id, "now": self.clock()})

    def last_activity(self, conversation_id: int) -> datetime:
        """When the conversation's newest turn was stored (its start, while it has none)."""
        moment = self._run(_LAST_ACTIVITY, {"conversation_id": conversation_id}).scalar()
        return _aware(moment) if moment is not None else self.clock()

    # Turns

    def add_turn(
        self,
        conversation_id: int,
        turn: Turn,
        channel_message_id: str | None = None,
        reply_to: int | None = None,
        provenance: Provenance | None = None,
    ) -> int:
        """Append a turn to a conversation and return its id: a user's with the channel's id of their message, a
        bot's with the id of the turn it answers and its provenance."""
        now = self.clock()
        values = {
            "conversation_id": conversation_id,
            "role": turn.role.value,
            "text": turn.text,
            "created_at": now,
            "channel_message_id": channel_message_id,
            "reply_to_id": reply_to,
        }
        message_id: int = self._run(_ADD_MESSAGE, values).scalar_one()
        if provenance is not None:
            self._run(_ADD_PROVENANCE, {"message_id": message_id, **vars(provenance)})
        self._run(_TOUCH_CONVERSATION, {"conversation_id": conversation_id, "now": now})
        return message_id

    def recent_turns(self, conversation_id: int, limit: int, through: int | None = None) -> list[Turn]:
        """The last ``limit`` turns of a conversation (up to turn id ``through`` when given), oldest first."""
        values = {"conversation_id": conversation_id, "through": LATEST if through is None else through, "limit": limit}
        rows = self._run(_RECENT_TURNS, values).all()
        return [Turn(Role(role), text) for role, text in reversed(rows)]

    def earlier(self, user_id: int, channel_message_id: str) -> EarlierMessage | None:
        """The user's message stored before with this channel message id, with the reply to it, if any."""
        row = self._run(_EARLIER, {"user_id": user_id, "channel_message_id": channel_message_id}).first()
        if row is None:
            return None
        conversation_id, turn_id, reply_id, reply_text, delivered_as = row
        return EarlierMessage(conversation_id, turn_id, reply_id, reply_text, delivered_as is not None)

    def mark_delivered(self, turn_id: int, channel_message_id: str) -> None:
        """Record the channel's id of a sent bot turn: from now on that reply counts as delivered."""
        self._run(_MARK_DELIVERED, {"turn_id": turn_id, "sent_as": channel_message_id})

    def last_provenance(self, conversation_id: int) -> ProvenReply | None:
        """The conversation's newest reply that has a provenance, with it."""
        row = self._run(_LAST_PROVENANCE, {"conversation_id": conversation_id}).first()
        if row is None:
            return None
        text, reply_to_id, model, decoding, score, latency_ms, source = row
        return ProvenReply(text, Provenance(model, dict(decoding), score, latency_ms, source), reply_to_id)

    # Privacy, statistics and export

    def forget(self, channel: str, external_id: str) -> int:
        """Delete the user of this channel and external id with every conversation, turn and setting; returns the
        turns deleted."""
        user_id = self._run(_USER_ID, {"channel": channel, "external_id": external_id}).scalar()
        if user_id is None:
            return 0
        theirs = {"user_id": user_id}
        count: int = self._run(_COUNT_THEIR_MESSAGES, theirs).scalar() or 0
        for statement in _DELETE_THEIR_CONVERSATIONS:
            self._run(statement, theirs)
        self._run(_DELETE_USER, theirs)
        return count

    def stats(self) -> DatabaseStats:
        """Counts of what the whole database holds (``maintenance.database_stats``)."""
        return maintenance.database_stats(self.session)

    def conversations(self, selection: Selection | None = None) -> Iterator[StoredConversation]:
        """Every stored conversation with its turns, in the order they started (those ``selection`` picks)."""
        query = _selected(_CONVERSATIONS, selection or Selection())
        for conversation_id, channel, external_id, started_at in self._run(query, {}).all():
            rows = self._run(_CONVERSATION_TURNS, {"conversation_id": conversation_id})
            turns = tuple(Turn(Role(role), text) for role, text in rows)
            yield StoredConversation(conversation_id, channel, external_id, _aware(started_at), turns)


SqlTransaction = Callable[[], AbstractContextManager[SqlStore]]


def sql_transaction(session_factory: sessionmaker[Session], clock: Clock = utc_now) -> SqlTransaction:
    """A Transaction over ``session_factory``: each call opens a session, begins, yields a SqlStore over it, and
    commits (``transactions.session_transaction``: the database's trouble becomes a one-line StorageError;
    ConnectionDropped when the connection dropped before the commit, which ``run_transaction`` tries again)."""

    @contextmanager
    def transaction() -> Iterator[SqlStore]:
        with session_transaction(session_factory) as session:
            yield SqlStore(session, clock)

    return transaction
