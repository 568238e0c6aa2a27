"""DialogueManager: history per conversation, commands, reset, and the user's turn stored before generation."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from chatbot.dialogue.commands import HELP_TEXT, RESET_TEXT, START_TEXT, Command, parse_command
from chatbot.dialogue.generator import EchoGenerator
from chatbot.dialogue.manager import FALLBACK_REPLY, UNSURE_REPLY, DialogueManager
from chatbot.dialogue.types import Reply, Role, Turn
from chatbot.storage.store import MemoryStore


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
