"""ConversationStore: what the dialogue manager reads and writes — users, their conversations, the turns and the
provenance of each reply — over a SQLAlchemy session.

The caller owns the transaction: it opens one with a ``Transaction`` (``sql_transaction(factory)``), does its reads
and writes through the store it is handed, and the transaction commits when the ``with`` block ends (or rolls back
on an exception); ``run_transaction`` runs a piece of work in one, and again if the connection dropped before the
commit. Tests use the same store on an in-memory SQLite database.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar, TypeVarTuple, Unpack

from sqlalchemy import CursorResult, Executable, Select, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, aliased, sessionmaker

from chatbot.dialogue.types import Role, Turn
from chatbot.errors import StorageError
from chatbot.storage import engine, models

logger = logging.getLogger(__name__)
Clock = Callable[[], datetime]
Columns = TypeVarTuple("Columns")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


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
class UnansweredMessage:
    """A user's message, stored with its channel message id, that the bot never answered (see
    ``ConversationStore.unanswered``): what a channel needs to answer it late through ``DialogueManager.respond``."""

    external_id: str
    channel_message_id: str
    text: str


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

    def where(self, query: Select[Unpack[Columns]]) -> Select[Unpack[Columns]]:
        """``query`` (over conversations joined to users) restricted to this selection."""
        user, conversation = models.User, models.Conversation
        if self.channel is not None:
            query = query.where(user.channel == self.channel)
        if self.external_id is not None:
            query = query.where(user.external_id == self.external_id)
        if self.started_from is not None:
            query = query.where(conversation.started_at >= self.started_from)
        if self.started_before is not None:
            query = query.where(conversation.started_at < self.started_before)
        return query


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes for what was stored as UTC; Postgres keeps the zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


# The statements of the per-message path (user, conversation, dedupe check, turns), built once and run on the
# session's connection. Building an ORM statement, or flushing an ORM object, per call costs more than SQLite
# takes to run it: measured with bench/storage.py, prebuilt Core statements store a turn in about half the time.
_user, _conversation, _message = models.User, models.Conversation, models.Message
_asked, _answer = aliased(models.Message), aliased(models.Message)
_FIND_USER = select(_user.id, _user.blocked, _user.settings, _user.display_name, _user.active).where(
    _user.channel == bindparam("channel"), _user.external_id == bindparam("external_id")
)
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
_ADD_PROVENANCE = insert(models.ReplyProvenance)
_MARK_DELIVERED = (
    update(_message).where(_message.id == bindparam("turn_id")).values(channel_message_id=bindparam("sent_as"))
)
_TOUCH_CONVERSATION = (
    update(_conversation)
    .where(_conversation.id == bindparam("conversation_id"))
    .values(last_activity_at=bindparam("now"))
)
LATEST = 2**31 - 1  # "through" for recent_turns without a bound: the largest id an INTEGER key holds


class ConversationStore:
    """Reads and writes of one transaction, over a session the caller opened and will commit; ``clock`` says
    what time it is (tests pass a fake one)."""

    def __init__(self, session: Session, clock: Clock = utc_now) -> None:
        self.session = session
        self.clock = clock

    # Users

    def user(self, channel: str, external_id: str, display_name: str | None = None) -> StoredUser:
        """The user of this channel and external id, created on first sight; ``display_name`` (when given) is
        kept up to date, and a user marked inactive is active again (they wrote, so they can be reached)."""
        key = {"channel": channel, "external_id": external_id}
        row = self._run(_FIND_USER, key).first()
        if row is None:
            # Insert-if-absent, so two processes seeing a new user at once both end up with the same row.
            values: dict[str, Any] = {**key, "display_name": display_name, "blocked": False, "settings": {}}
            values["created_at"] = self.clock()
            self.session.execute(_insert(self.session)(models.User).values(values).on_conflict_do_nothing())
            row = self._run(_FIND_USER, key).one()
        user_id, blocked, settings, stored_name, active = row
        changes: dict[str, Any] = {} if active else {"active": True}
        if display_name is not None and stored_name != display_name:
            changes["display_name"] = display_name
        if changes:
            self.session.execute(update(_user).where(_user.id == user_id).values(changes))
        return StoredUser(user_id, blocked, dict(settings))

    def _run(self, statement: Executable, values: dict[str, Any]) -> CursorResult[Unpack[tuple[Any, ...]]]:
        """Run a prebuilt Core statement on the session's connection, in the session's transaction."""
        return self.session.connection().execute(statement, values)

    def save_settings(self, user_id: int, settings: dict[str, Any]) -> None:
        """Replace a user's settings object."""
        self.session.execute(update(models.User).where(models.User.id == user_id).values(settings=settings))

    def set_blocked(self, channel: str, external_id: str, blocked: bool) -> None:
        """Block (or unblock) a user, creating them if they never wrote: a blocked user is neither answered nor
        stored."""
        user_id = self.user(channel, external_id).id
        self.session.execute(update(models.User).where(models.User.id == user_id).values(blocked=blocked))

    def set_active(self, channel: str, external_id: str, active: bool) -> None:
        """Mark a user as reachable or not (the channel refused to deliver to them: they blocked the bot)."""
        self.session.execute(
            update(_user).where(_user.channel == channel, _user.external_id == external_id).values(active=active)
        )

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
        self.session.execute(
            update(models.Conversation)
            .where(models.Conversation.id == conversation_id, models.Conversation.ended_at.is_(None))
            .values(ended_at=self.clock())
        )

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

    def unanswered(self, channel: str, since: datetime) -> list[UnansweredMessage]:
        """The user turns of ``channel`` stored since ``since`` with a channel message id that no delivered reply
        follows in their conversation, oldest first: unanswered (no reply, or one never sent), and the user has not
        moved on since (no reply to a later message sent, no /reset). Blocked users and users the channel cannot
        reach (they blocked the bot) are left out."""
        asked, later = aliased(models.Message), aliased(models.Message)
        delivered_after = (  # its own reply, or one to a later message of the conversation, was sent
            select(later.id)
            .where(
                later.conversation_id == asked.conversation_id,
                later.id > asked.id,
                later.role == Role.BOT.value,
                later.channel_message_id.is_not(None),
            )
            .exists()
        )
        query = (
            select(_user.external_id, asked.channel_message_id, asked.text)
            .join(_conversation, _conversation.id == asked.conversation_id)
            .join(_user, _user.id == _conversation.user_id)
            .where(
                _user.channel == channel,
                _user.blocked.is_(False),
                _user.active.is_(True),
                _conversation.ended_at.is_(None),
                _conversation.last_activity_at >= since,  # through its index: only recently active conversations
                asked.role == Role.USER.value,
                asked.channel_message_id.is_not(None),
                asked.created_at >= since,
                ~delivered_after,
            )
            .order_by(asked.id)
        )
        rows = self.session.execute(query).all()
        return [UnansweredMessage(external_id, str(message_id), text) for external_id, message_id, text in rows]

    def mark_delivered(self, turn_id: int, channel_message_id: str) -> None:
        """Record the channel's id of a sent bot turn: from now on that reply counts as delivered."""
        self._run(_MARK_DELIVERED, {"turn_id": turn_id, "sent_as": channel_message_id})

    def last_provenance(self, conversation_id: int) -> ProvenReply | None:
        """The conversation's newest reply that has a provenance, with it."""
        message, provenance = models.Message, models.ReplyProvenance
        row = self.session.execute(
            select(message.text, message.reply_to_id, provenance)
            .join(provenance, provenance.message_id == message.id)
            .where(message.conversation_id == conversation_id)
            .order_by(message.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return None
        text, reply_to_id, stored = row
        return ProvenReply(
            text,
            Provenance(stored.model, dict(stored.decoding), stored.score, stored.latency_ms, stored.source),
            reply_to_id,
        )

    # Privacy and export

    def forget(self, channel: str, external_id: str) -> int:
        """Delete the user of this channel and external id with every conversation, turn and setting; returns the
        turns deleted."""
        user = models.User
        user_id = self.session.scalar(select(user.id).where(user.channel == channel, user.external_id == external_id))
        if user_id is None:
            return 0
        theirs = select(models.Conversation.id).where(models.Conversation.user_id == user_id)
        count = messages_in(self.session, theirs)
        delete_conversations(self.session, theirs)
        self.session.execute(delete(user).where(user.id == user_id))
        return count

    def conversations(self, selection: Selection | None = None) -> Iterator[StoredConversation]:
        """Every stored conversation with its turns, in the order they started (those ``selection`` picks)."""
        user, conversation = models.User, models.Conversation
        query = (
            select(conversation.id, user.channel, user.external_id, conversation.started_at)
            .join(user, user.id == conversation.user_id)
            .order_by(conversation.id)
        )
        for conversation_id, channel, external_id, started_at in self.session.execute(
            (selection or Selection()).where(query)
        ).all():
            rows = self.session.execute(
                select(models.Message.role, models.Message.text)
                .where(models.Message.conversation_id == conversation_id)
                .order_by(models.Message.id)
            )
            turns = tuple(Turn(Role(role), text) for role, text in rows)
            yield StoredConversation(conversation_id, channel, external_id, _aware(started_at), turns)


def _insert(session: Session) -> Callable[..., Any]:
    """The dialect's INSERT (SQLite's and Postgres's both have ON CONFLICT DO NOTHING)."""
    return sqlite.insert if session.get_bind().dialect.name == "sqlite" else postgresql.insert


def messages_in(session: Session, conversation_ids: Select[Any]) -> int:
    """How many messages the conversations ``conversation_ids`` (a query of ids) hold."""
    return session.scalar(select(func.count()).where(models.Message.conversation_id.in_(conversation_ids))) or 0


def delete_conversations(session: Session, conversation_ids: Select[Any]) -> None:
    """Delete the conversations that ``conversation_ids`` (a query of ids, run as a subquery, never a list as large
    as the database) selects, their messages and those messages' provenance first. The query must select the same
    conversations once their messages are gone."""
    unsynchronised = {"synchronize_session": False}  # bulk deletes; no ORM objects of these rows are loaded
    message, provenance = models.Message, models.ReplyProvenance
    theirs = select(message.id).where(message.conversation_id.in_(conversation_ids))
    session.execute(delete(provenance).where(provenance.message_id.in_(theirs)), execution_options=unsynchronised)
    session.execute(
        delete(message).where(message.conversation_id.in_(conversation_ids)), execution_options=unsynchronised
    )
    session.execute(
        delete(models.Conversation).where(models.Conversation.id.in_(conversation_ids)),
        execution_options=unsynchronised,
    )


Transaction = Callable[[], AbstractContextManager[ConversationStore]]
Result = TypeVar("Result")
RETRY_DELAYS_S = (0.05, 0.25)  # pauses before running a transaction again whose connection dropped; then give up


class ConnectionDropped(StorageError):
    """The connection to the database dropped before the transaction's commit was sent: the server rolled all of
    it back, so running it again stores nothing twice."""


def sql_transaction(session_factory: sessionmaker[Session], clock: Clock = utc_now) -> Transaction:
    """A Transaction that opens a session, begins, yields a ConversationStore, and commits. The database's trouble
    (locked, unreachable, disk full, connection dropped) becomes a one-line StorageError; ConnectionDropped when the
    connection dropped before the commit."""

    @contextmanager
    def transaction() -> Iterator[ConversationStore]:
        committing = False
        try:
            with session_factory.begin() as session:
                yield ConversationStore(session, clock)
                committing = True  # a drop from here on may come after the server committed: not known to be undone
        except DBAPIError as error:
            if not (isinstance(error, OperationalError | InterfaceError) or error.connection_invalidated):
                raise  # a constraint or a statement the server refused: a bug, with its traceback
            failure = engine.database_error(session_factory.kw["bind"].url, error)
            if error.connection_invalidated and not committing:
                raise ConnectionDropped(str(failure)) from error
            raise failure from error
        except PoolTimeoutError as error:  # every pooled connection stayed busy for the pool's whole timeout
            url = engine.describe(session_factory.kw["bind"].url)
            reason = str(error).split(" (Background on this error")[0]
            raise StorageError(f"database {url}: too busy, no free connection ({reason})") from error

    return transaction


def run_transaction(transaction: Transaction, work: Callable[[ConversationStore], Result]) -> Result:
    """``work``'s result, run in a transaction of its own, and run again in a new one after a short pause while
    the connection drops before the commit (a server restarted or failed over, a connection cut): each such try
    was rolled back whole. Any other failure, and a drop on the last try, is raised."""
    for delay in RETRY_DELAYS_S:
        try:
            with transaction() as store:
                return work(store)
        except ConnectionDropped as error:
            logger.warning("%s; trying again in %g s", error, delay)
            time.sleep(delay)
    with transaction() as store:
        return work(store)
