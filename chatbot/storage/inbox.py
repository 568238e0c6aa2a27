"""InboxStore: the updates a channel received, each kept until its reply is delivered, over a SQLAlchemy session;
and ``inbox_transaction``, the transaction that hands one out.

The life of a row (models.InboxEntry): ``receive`` stores an update once, however often the platform sends it;
a worker ``claim``s the oldest unfinished row of each chat whose lease is free, leasing it for a while (``renew``
keeps the lease while the worker is still at it); the reply is stored with ``answer``, and once the platform took
it, ``deliver`` marks the row delivered (and the bot's turn with the platform's message id) in one commit. A reply
the platform did not take waits (``retry_later``) and is claimed again when due, until the channel gives up
(``fail``). Every write after the claim names the worker and changes nothing if its lease went to another worker:
a worker that stalled past its lease cannot overwrite the work of the one that took over.

On Postgres several processes claim from one table: ``SELECT ... FOR UPDATE SKIP LOCKED`` makes two claims that
run at once take different rows instead of waiting for each other. SQLite is served by one process, whose claims
run one at a time. Times come from ``clock`` (the workers' clocks should agree to within a lease).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import CursorResult, Executable, bindparam, delete, func, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from chatbot.storage import models
from chatbot.storage.contract import Clock, utc_now
from chatbot.storage.store import SqlStore
from chatbot.storage.transactions import session_transaction

RECEIVED, ANSWERED, DELIVERED, FAILED = models.INBOX_STATES
UNFINISHED = (RECEIVED, ANSWERED)


@dataclass(frozen=True)
class Outgoing:
    """A reply in the outbox: its text, whether it is shown in fixed width, and the stored bot turn it is (None for
    a command's answer or a refusal, which are not turns)."""

    text: str
    fixed_width: bool = False
    turn_id: int | None = None


@dataclass(frozen=True)
class InboxRow:
    """A claimed row: the update as the platform sent it (``payload``), how far it got, and how often it was
    claimed (more than once: a worker died or gave it back, and the reply comes late)."""

    id: int
    update_id: int
    chat: str
    payload: dict[str, Any]
    state: str
    claims: int
    reply: Outgoing | None
    answered_at: datetime | None
    parts_sent: int
    attempts: int


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes for what was stored as UTC; Postgres keeps the zone."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


# Every statement, built once (as in store.py). ``mine`` is one bot of one channel: two bots may share a database.
# Bound parameters of an UPDATE never share a column's name, which SQLAlchemy keeps for the SET clause.
_inbox = models.InboxEntry
_mine = (_inbox.channel == bindparam("of_channel")) & (_inbox.bot == bindparam("of_bot"))
_RECEIVE_VALUES = {"state": RECEIVED, "claims": 0, "reply_fixed_width": False, "parts_sent": 0, "attempts": 0}
# Insert-if-absent, returning the new row's id: no id back means the update was stored before.
_RECEIVE_SQLITE = sqlite.insert(_inbox).values(**_RECEIVE_VALUES).on_conflict_do_nothing().returning(_inbox.id)
_RECEIVE_POSTGRES = postgresql.insert(_inbox).values(**_RECEIVE_VALUES).on_conflict_do_nothing().returning(_inbox.id)
# Claimable: the oldest unfinished row of its chat (a chat's rows are answered in order), due, and its lease free
# or run out. The heads of the chats are found by grouping the unfinished rows, which a covering index keeps cheap:
# 0.4 ms with 2,000 rows waiting on SQLite, against 9 ms for a NOT EXISTS probe per row (bench/telegram_inbox.py).
_heads = (
    select(func.min(_inbox.id).label("id"))
    .where(_mine, _inbox.state.in_(UNFINISHED))
    .group_by(_inbox.chat)
    .subquery("heads")
)
_CLAIMABLE = (
    select(_inbox.id)
    .join(_heads, _heads.c.id == _inbox.id)
    # Unfinished again: on Postgres a row another claim finished meanwhile is locked and then checked against this
    # outer condition on its new version, while the heads were computed on the older snapshot.
    .where(_inbox.state.in_(UNFINISHED), _inbox.due_at <= bindparam("now"))
    .where(or_(_inbox.lease_until.is_(None), _inbox.lease_until < bindparam("now")))
    .order_by(_inbox.id)
    .limit(bindparam("limit"))
)
_CLAIMABLE_SKIP_LOCKED = _CLAIMABLE.with_for_update(skip_locked=True, of=_inbox)
_by_ids = _inbox.id.in_(bindparam("ids", expanding=True))
_LEASE = (
    update(_inbox)
    .where(_by_ids)
    .values(worker=bindparam("new_worker"), lease_until=bindparam("until"), claims=_inbox.claims + 1)
)
_READ = select(
    _inbox.id,
    _inbox.update_id,
    _inbox.chat,
    _inbox.payload,
    _inbox.state,
    _inbox.claims,
    _inbox.reply_text,
    _inbox.reply_fixed_width,
    _inbox.reply_turn_id,
    _inbox.answered_at,
    _inbox.parts_sent,
    _inbox.attempts,
).where(_by_ids)
# The writes of a worker, each only while the row is still its own and unfinished.
_held = (
    (_inbox.id == bindparam("row_id"))
    & (_inbox.worker == bindparam("holder"))
    & _inbox.state.in_(UNFINISHED)
    & (_inbox.lease_until.is_not(None))
)
_RENEW = update(_inbox).where(_by_ids, _inbox.worker == bindparam("holder")).values(lease_until=bindparam("until"))
_ANSWER = (
    update(_inbox)
    .where(_held, _inbox.state == RECEIVED)
    .values(
        state=ANSWERED,
        reply_text=bindparam("text"),
        reply_fixed_width=bindparam("fixed_width"),
        reply_turn_id=bindparam("turn_id"),
        answered_at=bindparam("now"),
    )
)
_PARTS_SENT = update(_inbox).where(_held).values(parts_sent=bindparam("count"))
_finished = {"payload": null(), "reply_text": None, "worker": None, "lease_until": None}  # SQL NULL, not JSON null
_FINISH = update(_inbox).where(_held).values(state=bindparam("final"), finished_at=bindparam("now"), **_finished)
_RETRY_LATER = (
    update(_inbox)
    .where(_held)
    .values(due_at=bindparam("due"), attempts=_inbox.attempts + 1, worker=None, lease_until=None)
)
_RELEASE = (
    update(_inbox)
    .where(_mine, _inbox.worker == bindparam("holder"), _inbox.state.in_(UNFINISHED))
    .values(worker=None, lease_until=None)
)
_RELEASE_ALL = update(_inbox).where(_mine, _inbox.state.in_(UNFINISHED)).values(worker=None, lease_until=None)
_UNFINISHED_COUNT = select(func.count()).where(_mine, _inbox.state.in_(UNFINISHED))
_PRUNE = delete(_inbox).where(_mine, _inbox.finished_at < bindparam("before"))


class InboxStore:
    """The inbox of one bot (``bot``) of ``channel``, in one transaction, over a session the caller opened and will
    commit; ``clock`` says what time it is (tests pass a fake one)."""

    def __init__(self, session: Session, channel: str, bot: str, clock: Clock = utc_now) -> None:
        self.session = session
        self.mine = {"of_channel": channel, "of_bot": bot}
        self.clock = clock

    def _run(self, statement: Executable, values: dict[str, Any]) -> CursorResult[Any]:
        return self.session.connection().execute(statement, {**self.mine, **values})

    def receive(self, update_id: int, chat: str, payload: dict[str, Any]) -> bool:
        """Store an update, unless it was stored before (sent again); whether it is new. ``chat`` orders it: the
        rows of one chat are answered one after another, oldest first."""
        now = self.clock()
        statement = _RECEIVE_SQLITE if self.session.connection().dialect.name == "sqlite" else _RECEIVE_POSTGRES
        values = {"update_id": update_id, "chat": chat, "payload": payload, "received_at": now, "due_at": now}
        mine = {"channel": self.mine["of_channel"], "bot": self.mine["of_bot"]}
        return self.session.connection().execute(statement, {**mine, **values}).first() is not None

    def claim(self, worker: str, limit: int, lease: timedelta) -> list[InboxRow]:
        """Lease to ``worker`` up to ``limit`` rows to work on, oldest first, at most one per chat (its oldest
        unfinished one); each row claimed is the worker's until ``lease`` from now, unless renewed."""
        now = self.clock()
        postgres = self.session.connection().dialect.name == "postgresql"
        query = _CLAIMABLE_SKIP_LOCKED if postgres else _CLAIMABLE
        ids = list(self._run(query, {"now": now, "limit": limit}).scalars())
        if not ids:
            return []
        self._run(_LEASE, {"ids": ids, "new_worker": worker, "until": now + lease})
        rows = self._run(_READ, {"ids": ids}).all()
        return sorted((_row(row) for row in rows), key=lambda row: row.id)

    def renew(self, worker: str, row_ids: list[int], lease: timedelta) -> None:
        """Keep ``worker``'s leases of ``row_ids`` for ``lease`` from now (rows it lost stay lost)."""
        if row_ids:
            self._run(_RENEW, {"ids": row_ids, "holder": worker, "until": self.clock() + lease})

    def answer(self, row_id: int, worker: str, reply: Outgoing | None) -> bool:
        """Store ``reply`` to a received row (None: there is nothing to send, and the row is finished); whether the
        row was still ``worker``'s."""
        if reply is None:
            return self._finish(row_id, worker, DELIVERED)
        values = {"row_id": row_id, "holder": worker, "now": self.clock()}
        reply_values = {"text": reply.text, "fixed_width": reply.fixed_width, "turn_id": reply.turn_id}
        return bool(self._run(_ANSWER, {**values, **reply_values}).rowcount)

    def parts_sent(self, row_id: int, worker: str, count: int) -> None:
        """Record that the first ``count`` parts of a long reply were sent (a restart sends the rest)."""
        self._run(_PARTS_SENT, {"row_id": row_id, "holder": worker, "count": count})

    def deliver(self, row_id: int, worker: str, turn_id: int | None, channel_message_id: str) -> bool:
        """Mark the row delivered and its bot turn (if any) sent as ``channel_message_id``, in this one
        transaction; whether the row was still ``worker``'s."""
        if not self._finish(row_id, worker, DELIVERED):
            return False
        if turn_id is not None:
            SqlStore(self.session, self.clock).mark_delivered(turn_id, channel_message_id)
        return True

    def fail(self, row_id: int, worker: str) -> bool:
        """Give up on the row's reply (the chat refuses it, or it could not be delivered in time)."""
        return self._finish(row_id, worker, FAILED)

    def retry_later(self, row_id: int, worker: str, due: datetime) -> None:
        """Give the row back, to be claimed again (by any worker) from ``due`` on, one more attempt counted."""
        self._run(_RETRY_LATER, {"row_id": row_id, "holder": worker, "due": due})

    def release(self, worker: str) -> int:
        """Give back every unfinished row ``worker`` holds (it is stopping); how many."""
        return int(self._run(_RELEASE, {"holder": worker}).rowcount)

    def release_all(self) -> int:
        """Free every lease of this bot's rows: for the one process a SQLite database serves, at its start, since
        the leases can only be left over from a process that died."""
        return int(self._run(_RELEASE_ALL, {}).rowcount)

    def unfinished(self) -> int:
        """How many rows are waiting to be answered or delivered."""
        return int(self._run(_UNFINISHED_COUNT, {}).scalar_one())

    def prune(self, before: datetime) -> int:
        """Delete the rows finished before ``before``; how many."""
        return int(self._run(_PRUNE, {"before": before}).rowcount)

    def _finish(self, row_id: int, worker: str, final: str) -> bool:
        values = {"row_id": row_id, "holder": worker, "final": final, "now": self.clock()}
        return bool(self._run(_FINISH, values).rowcount)


def _row(row: Any) -> InboxRow:
    reply = None if row.reply_text is None else Outgoing(row.reply_text, row.reply_fixed_width, row.reply_turn_id)
    answered_at = None if row.answered_at is None else _aware(row.answered_at)
    return InboxRow(
        row.id,
        row.update_id,
        row.chat,
        row.payload or {},
        row.state,
        row.claims,
        reply,
        answered_at,
        row.parts_sent,
        row.attempts,
    )


InboxTransaction = Callable[[], AbstractContextManager[InboxStore]]


def inbox_transaction(
    session_factory: sessionmaker[Session], channel: str, bot: str, clock: Clock = utc_now
) -> InboxTransaction:
    """A transaction factory over ``session_factory``: each call opens a session, begins, yields the InboxStore
    of ``bot`` of ``channel`` over it, and commits (the database's trouble as in ``session_transaction``)."""

    @contextmanager
    def transaction() -> Iterator[InboxStore]:
        with session_transaction(session_factory) as session:
            yield InboxStore(session, channel, bot, clock)

    return transaction
