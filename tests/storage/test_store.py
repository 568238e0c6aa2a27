"""SqlStore on SQLite and a real Postgres: users, conversations, turns, delivery and provenance."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from chatbot.dialogue.generator import EchoGenerator
from chatbot.dialogue.manager import DialogueManager
from chatbot.dialogue.types import Role, Turn
from chatbot.storage import models
from chatbot.storage.engine import open_database
from chatbot.storage.records import EarlierMessage, Provenance, ProvenReply, Selection
from chatbot.storage.store import SqlTransaction, sql_transaction
from chatbot.storage.transactions import engine_of


@pytest.fixture
def transaction(database_url: str) -> Iterator[SqlTransaction]:
    sessions = open_database(database_url)
    yield sql_transaction(sessions)
    engine_of(sessions).dispose()


def test_users_are_made_once_and_keep_name_settings_and_block(transaction: SqlTransaction) -> None:
    with transaction() as store:
        ann = store.user("telegram", "42", "Ann")
        assert (ann.blocked, ann.settings) == (False, {})
        assert store.user("telegram", "42").id == ann.id  # no name given: the stored one stays
        assert store.user("terminal", "42").id != ann.id  # channels never share a user
        store.save_settings(ann.id, {"mode": "beam", "beam_size": 4})
        store.set_blocked("telegram", "99", blocked=True)  # blocked before ever writing
        store.set_active("telegram", "42", active=False)  # Telegram refused to deliver to them
    with transaction() as store:
        assert not store.session.scalar(select(models.User.active).where(models.User.id == ann.id))
        assert store.user("telegram", "42", "Ann B.").settings == {"mode": "beam", "beam_size": 4}
        assert store.session.scalar(select(models.User.active).where(models.User.id == ann.id))  # wrote: reachable
        assert store.user("telegram", "99").blocked
        user = models.User
        names = dict(
            store.session.execute(select(user.external_id, user.display_name).where(user.channel == "telegram")).all()
        )
    assert names == {"42": "Ann B.", "99": None}


def test_conversation_lifecycle(transaction: SqlTransaction) -> None:
    with transaction() as store:
        user = store.user("telegram", "42").id
        first = store.current_conversation(user)
        assert store.current_conversation(user) == first
        turn_ids = [
            store.add_turn(first, Turn(Role.USER if index % 2 == 0 else Role.BOT, f"turn {index}"))
            for index in range(5)
        ]
    with transaction() as store:
        assert [t.text for t in store.recent_turns(first, 3)] == ["turn 2", "turn 3", "turn 4"]
        assert store.recent_turns(first, 3)[0].role is Role.USER
        assert [t.text for t in store.recent_turns(first, 2, through=turn_ids[2])] == ["turn 1", "turn 2"]
        store.end_conversation(first)
    with transaction() as store:
        second = store.current_conversation(user)
        assert second != first
        assert store.recent_turns(second, 10) == []
        exported = list(store.conversations())
    assert [(c.channel, c.external_id, len(c.turns)) for c in exported] == [
        ("telegram", "42", 5),
        ("telegram", "42", 0),
    ]


def test_a_failed_transaction_writes_nothing(transaction: SqlTransaction) -> None:
    with pytest.raises(RuntimeError), transaction() as store:
        conversation = store.current_conversation(store.user("terminal", "x").id)
        store.add_turn(conversation, Turn(Role.USER, "lost"))
        raise RuntimeError("boom")
    with transaction() as store:
        assert list(store.conversations()) == []
        assert store.session.scalar(select(func.count()).select_from(models.User)) == 0


def test_an_incoming_message_is_found_again_with_its_reply_and_delivery(transaction: SqlTransaction) -> None:
    provenance = Provenance("tiny@0123456789ab", {"strategy": "beam", "beam_size": 5}, 0.25, 12.5)
    with transaction() as store:
        user = store.user("telegram", "5").id
        conversation = store.current_conversation(user)
        asked = store.add_turn(conversation, Turn(Role.USER, "hi"), channel_message_id="100")
        assert store.earlier(user, "100") == _earlier(conversation, asked, None, None, False)
        assert store.earlier(user, "101") is None
        assert store.earlier(store.user("telegram", "6").id, "100") is None  # another chat's message 100
        answered = store.add_turn(conversation, Turn(Role.BOT, "hello"), reply_to=asked, provenance=provenance)
        assert store.earlier(user, "100") == _earlier(conversation, asked, answered, "hello", False)
        store.mark_delivered(answered, "101")
        assert store.earlier(user, "100") == _earlier(conversation, asked, answered, "hello", True)
        assert store.earlier(user, "101") is None  # the bot's own message id is not an incoming message
        assert store.last_provenance(conversation) == ProvenReply("hello", provenance, reply_to_id=asked)
        store.end_conversation(conversation)
    with transaction() as store:  # a new session: the message is still recognised
        assert store.earlier(user, "100") == _earlier(conversation, asked, answered, "hello", True)
        assert store.last_provenance(store.current_conversation(user)) is None


def _earlier(conversation: int, asked: int, reply: int | None, text: str | None, delivered: bool) -> object:
    return EarlierMessage(conversation, asked, reply, text, delivered)


def test_manager_over_sql_stores_both_turns(database_url: str) -> None:
    sessions = open_database(database_url)
    manager = DialogueManager(EchoGenerator(), sql_transaction(sessions))
    manager.respond("terminal", "ann", "hello")
    manager.respond("terminal", "ann", "how are you?")
    with sql_transaction(sessions)() as store:
        (conversation,) = store.conversations()
        replies = store.session.execute(
            select(models.Message.text, models.Message.reply_to_id, models.ReplyProvenance.model)
            .join(models.ReplyProvenance)
            .order_by(models.Message.id)
        ).all()
    assert [(t.role, t.text) for t in conversation.turns] == [
        (Role.USER, "hello"),
        (Role.BOT, "echo: hello"),
        (Role.USER, "how are you?"),
        (Role.BOT, "echo: how are you?"),
    ]
    assert [tuple(row) for row in replies] == [("echo: hello", 1, "echo"), ("echo: how are you?", 3, "echo")]
    engine_of(sessions).dispose()


def test_last_activity_forget_and_one_users_conversations(transaction: SqlTransaction) -> None:
    with transaction() as store:
        me = store.user("telegram", "7").id
        mine = store.current_conversation(me)
        started = store.last_activity(mine)
        asked = store.add_turn(mine, Turn(Role.USER, "hi"))
        store.add_turn(mine, Turn(Role.BOT, "hey"), reply_to=asked, provenance=Provenance("m", {}, None, 1.0))
        store.end_conversation(mine)
        again = store.current_conversation(me)
        store.add_turn(again, Turn(Role.USER, "me again"))
        other = store.current_conversation(store.user("telegram", "8").id)
        store.add_turn(other, Turn(Role.USER, "not me"))
    with transaction() as store:
        assert store.last_activity(mine) >= started and store.last_activity(mine).tzinfo is not None
        assert [c.id for c in store.conversations(Selection("telegram", "7"))] == [mine, again]
        assert [c.turns for c in store.conversations(Selection(external_id="8"))] == [(Turn(Role.USER, "not me"),)]
        future = datetime.now(timezone.utc) + timedelta(days=1)
        assert list(store.conversations(Selection(started_from=future))) == []
        assert len(list(store.conversations(Selection(started_before=future)))) == 3
        assert store.forget("telegram", "7") == 3
    with transaction() as store:
        assert [c.external_id for c in store.conversations()] == ["8"]
        assert store.forget("telegram", "7") == 0
        users = store.session.scalars(select(models.User.external_id)).all()
        provenance = store.session.scalar(select(func.count()).select_from(models.ReplyProvenance))
    assert (users, provenance) == (["8"], 0)


@pytest.mark.reliability
def test_a_locked_sqlite_file_is_a_one_line_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from chatbot.errors import StorageError
    from chatbot.storage import engine

    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "chat.sqlite3"
    transaction = sql_transaction(open_database(f"sqlite:///{path}"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing
    try:
        with (
            pytest.raises(
                StorageError, match=r"database is locked \(another process holds a write lock; waited 0.05 s\)"
            ),
            transaction() as store,
        ):
            store.user("terminal", "ann")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with transaction() as store:  # the lock is gone: the same store works again
        assert store.user("terminal", "ann").id > 0


def test_a_thousand_interleaved_conversations_never_cross(database_url: str) -> None:
    """1,000 conversations, two messages each, answered by 8 threads in interleaved order: every history the
    generator sees, and every stored conversation, holds that conversation's turns only."""
    from concurrent.futures import ThreadPoolExecutor

    sessions = open_database(database_url)
    generator = EchoGenerator(history_turns=3)
    manager = DialogueManager(generator, sql_transaction(sessions))
    messages = [(f"u{user}", f"u{user} says {n}") for n in range(2) for user in range(1000)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda item: manager.respond("load", *item), messages, timeout=300))
    assert len(generator.calls) == 2000
    for seen in generator.calls:  # "u7 says 1" and "echo: u7 says 0" both name their owner as a whole word
        owner = seen[-1].text.split()[0]
        assert all(owner in turn.text.split() for turn in seen)
    with sql_transaction(sessions)() as store:
        conversations = list(store.conversations())
    assert len(conversations) == 1000
    for conversation in conversations:
        assert [turn.text for turn in conversation.turns] == [
            f"{conversation.external_id} says 0",
            f"echo: {conversation.external_id} says 0",
            f"{conversation.external_id} says 1",
            f"echo: {conversation.external_id} says 1",
        ]
    engine_of(sessions).dispose()


def test_no_free_pooled_connection_in_time_is_a_one_line_storage_error(tmp_path: Path) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from chatbot.errors import StorageError

    url = f"sqlite:///{tmp_path / 'chat.sqlite3'}"
    open_database(url)  # creates the schema
    busy = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.05)
    transaction = sql_transaction(sessionmaker(busy, expire_on_commit=False))
    with transaction() as store:
        store.user("terminal", "ann")  # holds the one connection
        busy_error = r"too busy, no free connection \(QueuePool limit of size 1"
        with pytest.raises(StorageError, match=busy_error) as caught, transaction() as other:
            other.user("terminal", "bob")
        assert "\n" not in str(caught.value) and "timeout 0.05" in str(caught.value)
