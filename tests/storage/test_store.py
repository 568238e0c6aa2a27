"""SqlConversationStore on SQLite and a real Postgres, checked against the same expectations as MemoryStore."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chatbot.dialogue.generator import EchoGenerator
from chatbot.dialogue.manager import DialogueManager
from chatbot.dialogue.types import Role, Turn
from chatbot.storage.engine import open_database
from chatbot.storage.store import MemoryStore, Selection, Transaction, sql_transaction


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def transaction(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Transaction]:
    if request.param == "memory":
        yield MemoryStore().transaction
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'chat.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    sessions = open_database(url)
    yield sql_transaction(sessions)
    sessions.kw["bind"].dispose()


def test_conversation_lifecycle(transaction: Transaction) -> None:
    with transaction() as store:
        first = store.current_conversation("telegram", "42")
        assert store.current_conversation("telegram", "42") == first
        assert store.current_conversation("terminal", "42") != first  # channels never share a conversation
        for index in range(5):
            store.add_turn(first, Turn(Role.USER if index % 2 == 0 else Role.BOT, f"turn {index}"))
    with transaction() as store:
        assert [t.text for t in store.recent_turns(first, 3)] == ["turn 2", "turn 3", "turn 4"]
        assert store.recent_turns(first, 3)[0].role is Role.USER
        store.end_conversation(first)
    with transaction() as store:
        second = store.current_conversation("telegram", "42")
        assert second != first
        assert store.recent_turns(second, 10) == []
        exported = list(store.conversations())
    assert [(c.channel, c.external_id, len(c.turns)) for c in exported] == [
        ("telegram", "42", 5),
        ("terminal", "42", 0),
        ("telegram", "42", 0),
    ]


def test_a_failed_transaction_writes_nothing(transaction: Transaction) -> None:
    with pytest.raises(RuntimeError), transaction() as store:
        conversation = store.current_conversation("terminal", "x")
        store.add_turn(conversation, Turn(Role.USER, "lost"))
        raise RuntimeError("boom")
    with transaction() as store:
        assert all(not c.turns for c in store.conversations())


def test_manager_over_sql_stores_both_turns(database_url: str) -> None:
    sessions = open_database(database_url)
    manager = DialogueManager(EchoGenerator(), sql_transaction(sessions))
    manager.respond("terminal", "ann", "hello")
    manager.respond("terminal", "ann", "how are you?")
    with sql_transaction(sessions)() as store:
        (conversation,) = store.conversations()
    assert [(t.role, t.text) for t in conversation.turns] == [
        (Role.USER, "hello"),
        (Role.BOT, "echo: hello"),
        (Role.USER, "how are you?"),
        (Role.BOT, "echo: how are you?"),
    ]
    sessions.kw["bind"].dispose()


def test_last_activity_forget_and_one_users_conversations(transaction: Transaction) -> None:
    with transaction() as store:
        mine = store.current_conversation("telegram", "7")
        started = store.last_activity(mine)
        store.add_turn(mine, Turn(Role.USER, "hi"))
        store.end_conversation(mine)
        again = store.current_conversation("telegram", "7")
        store.add_turn(again, Turn(Role.USER, "me again"))
        other = store.current_conversation("telegram", "8")
        store.add_turn(other, Turn(Role.USER, "not me"))
    with transaction() as store:
        assert store.last_activity(mine) >= started and store.last_activity(mine).tzinfo is not None
        assert [c.id for c in store.conversations(Selection("telegram", "7"))] == [mine, again]
        assert [c.turns for c in store.conversations(Selection(external_id="8"))] == [(Turn(Role.USER, "not me"),)]
        future = datetime.now(timezone.utc) + timedelta(days=1)
        assert list(store.conversations(Selection(started_from=future))) == []
        assert len(list(store.conversations(Selection(started_before=future)))) == 3
        assert store.forget("telegram", "7") == 2
    with transaction() as store:
        assert [c.external_id for c in store.conversations()] == ["8"]
        assert store.forget("telegram", "7") == 0


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
            store.current_conversation("terminal", "ann")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with transaction() as store:  # the lock is gone: the same store works again
        assert store.current_conversation("terminal", "ann") > 0


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
    sessions.kw["bind"].dispose()
