"""DialogueManager: history per conversation, commands, reset, and the user's turn stored before generation."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from chatbot.dialogue.commands import (
    EMPTY_EXPORT_TEXT,
    FORGET_TEXT,
    HELP_TEXT,
    RESET_TEXT,
    START_TEXT,
    Command,
    parse_command,
)
from chatbot.dialogue.generator import EchoGenerator
from chatbot.dialogue.manager import FALLBACK_REPLY, UNSURE_REPLY, DialogueManager
from chatbot.dialogue.types import Reply, Role, Turn
from chatbot.storage.engine import open_database
from chatbot.storage.store import MemoryStore, sql_transaction


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def test_reply_sees_this_conversations_recent_history_only(store: MemoryStore) -> None:
    generator = EchoGenerator(history_turns=3)
    manager = DialogueManager(generator, store.transaction)
    assert manager.respond("test", "alice", "one") == Reply("echo: one")
    manager.respond("test", "bob", "other")
    manager.respond("test", "alice", "two")
    assert generator.calls[-1] == (
        Turn(Role.USER, "one"),
        Turn(Role.BOT, "echo: one"),
        Turn(Role.USER, "two"),
    )
    manager.respond("test", "alice", "three")
    assert len(generator.calls[-1]) == 3 and generator.calls[-1][-1] == Turn(Role.USER, "three")


def test_reset_starts_a_fresh_history_and_keeps_the_old_one(store: MemoryStore) -> None:
    generator = EchoGenerator()
    manager = DialogueManager(generator, store.transaction)
    manager.respond("test", "alice", "before")
    assert manager.respond("test", "alice", "/reset") == Reply(RESET_TEXT, is_command=True)
    manager.respond("test", "alice", "after")
    assert generator.calls[-1] == (Turn(Role.USER, "after"),)
    assert [len(c.turns) for c in store.conversations()] == [2, 2]


def test_commands(store: MemoryStore) -> None:
    manager = DialogueManager(EchoGenerator(), store.transaction)
    assert manager.respond("test", "a", "/help").text == HELP_TEXT
    assert manager.respond("test", "a", "/start").text == START_TEXT
    assert manager.respond("test", "a", "/frobnicate").text == "Unknown command /frobnicate. Try /help."
    assert all(not c.turns for c in store.conversations()), "commands are not conversation turns"


def test_parse_command() -> None:
    assert parse_command("/reset@my_bot now") == Command("reset", "now")
    assert parse_command("  /HELP ") == Command("help")
    assert parse_command("hello /help") is None
    assert parse_command("/") is None


class FailingGenerator(EchoGenerator):
    def reply(self, history: Sequence[Turn]) -> str:
        raise RuntimeError("model crashed")


class BlankGenerator(EchoGenerator):
    def reply(self, history: Sequence[Turn]) -> str:
        return "   "


class UnsureGenerator(EchoGenerator):
    def reply(self, history: Sequence[Turn]) -> str | None:
        return None


def test_user_turn_is_stored_even_when_generation_fails(store: MemoryStore) -> None:
    with pytest.raises(RuntimeError):
        DialogueManager(FailingGenerator(), store.transaction).respond("test", "a", "are you there?")
    assert [c.turns for c in store.conversations()] == [(Turn(Role.USER, "are you there?"),)]


def test_an_empty_generation_is_never_sent(store: MemoryStore) -> None:
    assert DialogueManager(BlankGenerator(), store.transaction).respond("test", "a", "hi").text == FALLBACK_REPLY


def test_an_unsure_generator_gets_the_unsure_reply_which_is_stored(store: MemoryStore) -> None:
    assert DialogueManager(UnsureGenerator(), store.transaction).respond("test", "a", "hi").text == UNSURE_REPLY
    assert [turn.text for turn in next(store.conversations()).turns] == ["hi", UNSURE_REPLY]


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def test_an_idle_conversation_ends_and_the_next_message_starts_a_new_one() -> None:
    clock = FakeClock()
    store, generator = MemoryStore(clock=clock), EchoGenerator()
    manager = DialogueManager(generator, store.transaction, session_timeout=timedelta(minutes=30), clock=clock)
    manager.respond("test", "a", "morning")
    clock.now += timedelta(minutes=29)
    manager.respond("test", "a", "still here")
    assert len(generator.calls[-1]) == 3  # the same conversation: morning, its reply, still here
    clock.now += timedelta(minutes=31)
    manager.respond("test", "a", "back after lunch")
    assert generator.calls[-1] == (Turn(Role.USER, "back after lunch"),)
    assert [len(c.turns) for c in store.conversations()] == [4, 2]
    never = DialogueManager(generator, store.transaction, session_timeout=None, clock=clock)
    clock.now += timedelta(days=365)
    never.respond("test", "a", "a year later")
    assert len(generator.calls[-1]) == 3  # no timeout: the conversation goes on


def test_export_shows_the_conversation_and_forget_deletes_only_this_users_data(store: MemoryStore) -> None:
    manager = DialogueManager(EchoGenerator(), store.transaction)
    assert manager.respond("test", "a", "/export").text == EMPTY_EXPORT_TEXT
    manager.respond("test", "a", "hello")
    manager.respond("test", "b", "i stay")
    assert manager.respond("test", "a", "/export") == Reply("you: hello\nbot: echo: hello", is_command=True)
    manager.respond("test", "a", "/reset")
    manager.respond("test", "a", "again")
    assert manager.respond("test", "a", "/forget").text == FORGET_TEXT.format(count=4)
    assert [(c.external_id, len(c.turns)) for c in store.conversations()] == [("b", 2)]
    assert manager.respond("test", "a", "new start").text == "echo: new start"


class SlowEcho(EchoGenerator):
    """Echoes after a pause, so two messages of one conversation would interleave without the manager's lock."""

    def reply(self, history: Sequence[Turn]) -> str:
        time.sleep(0.002)
        return f"echo: {history[-1].text}"


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_concurrent_messages_never_interleave_within_a_conversation_or_cross_between_them(
    backend: str, tmp_path: Path
) -> None:
    if backend == "memory":
        transaction = MemoryStore().transaction
    else:
        transaction = sql_transaction(open_database(f"sqlite:///{tmp_path / 'chat.sqlite3'}"))
    manager = DialogueManager(SlowEcho(history_turns=1), transaction)
    messages = [(f"user{u}", f"user{u} message {m}") for m in range(4) for u in range(25)]  # interleaved
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda item: manager.respond("test", *item), messages, timeout=60))
    assert all(reply.text.startswith("echo: ") for reply in replies)
    with transaction() as store:
        conversations = list(store.conversations())
    assert len(conversations) == 25
    for conversation in conversations:
        turns = conversation.turns
        assert [turn.role for turn in turns] == [Role.USER, Role.BOT] * 4  # strictly alternating
        for asked, answered in zip(turns[::2], turns[1::2], strict=True):
            assert asked.text.startswith(f"{conversation.external_id} ")  # nothing crossed over
            assert answered.text == f"echo: {asked.text}"  # each reply answers the message right before it
