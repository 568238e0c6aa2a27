"""DialogueManager: history per conversation, commands, settings, reset, the user's turn stored before generation,
and a message delivered twice answered once."""

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
from chatbot.dialogue.generator import EchoGenerator, Generated
from chatbot.dialogue.manager import (
    FALLBACK_REPLY,
    UNSURE_REPLY,
    DialogueManager,
)
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import NOTHING, Reply, Role, Turn
from chatbot.storage.engine import open_database
from chatbot.storage.store import sql_transaction
from tests.database import ScratchDatabase


@pytest.fixture
def store() -> ScratchDatabase:
    return ScratchDatabase()


def test_reply_sees_this_conversations_recent_history_only(store: ScratchDatabase) -> None:
    generator = EchoGenerator(history_turns=3)
    manager = DialogueManager(generator, store.transaction)
    assert manager.respond("test", "alice", "one") == Reply("echo: one", turn_id=2)
    manager.respond("test", "bob", "other")
    manager.respond("test", "alice", "two")
    assert generator.calls[-1] == (
        Turn(Role.USER, "one"),
        Turn(Role.BOT, "echo: one"),
        Turn(Role.USER, "two"),
    )
    manager.respond("test", "alice", "three")
    assert len(generator.calls[-1]) == 3 and generator.calls[-1][-1] == Turn(Role.USER, "three")


def test_reset_starts_a_fresh_history_and_keeps_the_old_one(store: ScratchDatabase) -> None:
    generator = EchoGenerator()
    manager = DialogueManager(generator, store.transaction)
    manager.respond("test", "alice", "before")
    assert manager.respond("test", "alice", "/reset") == Reply(RESET_TEXT, is_command=True)
    manager.respond("test", "alice", "after")
    assert generator.calls[-1] == (Turn(Role.USER, "after"),)
    assert [len(c.turns) for c in store.conversations()] == [2, 2]


def test_commands(store: ScratchDatabase) -> None:
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
    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        raise RuntimeError("model crashed")


class BlankGenerator(EchoGenerator):
    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        return Generated("   ", 0.5, "blank", {})


class UnsureGenerator(EchoGenerator):
    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        return Generated(None, 0.01, "unsure", {})


def test_user_turn_is_stored_even_when_generation_fails(store: ScratchDatabase) -> None:
    with pytest.raises(RuntimeError):
        DialogueManager(FailingGenerator(), store.transaction).respond("test", "a", "are you there?")
    assert [c.turns for c in store.conversations()] == [(Turn(Role.USER, "are you there?"),)]


def test_an_empty_generation_is_never_sent(store: ScratchDatabase) -> None:
    assert DialogueManager(BlankGenerator(), store.transaction).respond("test", "a", "hi").text == FALLBACK_REPLY


def test_an_unsure_generator_gets_the_unsure_reply_which_is_stored(store: ScratchDatabase) -> None:
    assert DialogueManager(UnsureGenerator(), store.transaction).respond("test", "a", "hi").text == UNSURE_REPLY
    assert [turn.text for turn in store.conversations()[0].turns] == ["hi", UNSURE_REPLY]


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def test_an_idle_conversation_ends_and_the_next_message_starts_a_new_one() -> None:
    clock = FakeClock()
    store, generator = ScratchDatabase(clock=clock), EchoGenerator()
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


@pytest.mark.reliability
def test_export_shows_the_conversation_and_forget_deletes_only_this_users_data(store: ScratchDatabase) -> None:
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

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        time.sleep(0.002)
        return Generated(f"echo: {history[-1].text}", 1.0, "slow", {})


def test_concurrent_messages_never_interleave_within_a_conversation_or_cross_between_them(tmp_path: Path) -> None:
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


def test_decoding_commands_are_stored_per_user_and_used_for_their_replies(store: ScratchDatabase) -> None:
    generator = EchoGenerator()
    manager = DialogueManager(generator, store.transaction)
    assert manager.respond("test", "a", "/settings").text == "Decoding: mode greedy."
    assert manager.respond("test", "a", "/beam 4").text == "Decoding: mode beam, beam 4."
    manager.respond("test", "a", "hi")
    manager.respond("test", "b", "hi")
    assert generator.settings[-2:] == [
        DecodeSettings("beam", 4, 1.0, 1.0),
        DecodeSettings("greedy", 5, 1.0, 1.0),  # b chose nothing: the defaults
    ]
    assert manager.respond("test", "a", "/temperature 0.7").text == "Decoding: mode sample, temperature 0.7, top-p 1."
    assert manager.respond("test", "a", "/topp 0.9").text == "Decoding: mode sample, temperature 0.7, top-p 0.9."
    assert manager.respond("test", "a", "/mode BEAM").text == "Decoding: mode beam, beam 4."
    manager.respond("test", "a", "/reset")  # settings belong to the user, not the conversation
    manager.respond("test", "a", "again")
    assert generator.settings[-1] == DecodeSettings("beam", 4, 0.7, 0.9)
    assert manager.respond("test", "a", "/settings reset").text == "Decoding: mode greedy."
    manager.respond("test", "a", "plain")
    assert generator.settings[-1] == generator.default_settings


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("/beam 1000", "The beam width must be a whole number from 1 to 16."),
        ("/beam 2.5", "The beam width must be a whole number from 1 to 16."),
        ("/temperature 0", "The temperature must be a number from 0.05 to 5."),
        ("/temperature nan", "The temperature must be a number from 0.05 to 5."),
        ("/topp 1.5", "Top-p must be a number from 0.01 to 1."),
        ("/mode fancy", "The mode must be one of greedy, beam, sample."),
        ("/beam", "Write a value after /beam, such as /beam 5."),
        ("/settings please", "Write /settings to see your decoding settings, or /settings reset to clear them."),
    ],
)
def test_bad_setting_values_are_explained_and_change_nothing(store: ScratchDatabase, command: str, error: str) -> None:
    manager = DialogueManager(EchoGenerator(), store.transaction)
    manager.respond("test", "a", "/beam 3")
    assert manager.respond("test", "a", command) == Reply(error, is_command=True)
    assert manager.respond("test", "a", "/settings").text == "Decoding: mode beam, beam 3."


def test_settings_out_of_bounds_in_the_database_are_not_trusted() -> None:
    stored = {"mode": "beam", "beam_size": 10_000, "temperature": 0.5, "top_p": "x", "colour": "red"}
    assert DecodeSettings.from_json(stored) == DecodeSettings(mode="beam", temperature=0.5)


def test_why_tells_how_the_last_reply_was_made(store: ScratchDatabase) -> None:
    manager = DialogueManager(EchoGenerator(), store.transaction)
    assert manager.respond("test", "a", "/why").text == "There is no generated reply in this conversation yet."
    manager.respond("test", "a", "/beam 2")
    manager.respond("test", "a", "hello")
    why = manager.respond("test", "a", "/why").text.splitlines()
    assert why[:4] == [
        "Last reply: 'echo: hello'",
        "Model: echo",
        "Decoding: mode beam, beam_size 2, temperature 1.0, top_p 1.0",
        "Score: 1.000",
    ]
    assert why[4].startswith("Generated in ") and why[4].endswith(" ms")
    assert why[5] == "Source: generated by the model"
    assert why[6:] == ["", "Echoed 'hello', the last of 1 turns."]  # the generator's own explanation
    manager.respond("test", "a", "again")
    manager.respond("test", "a", "/history")  # a command between: /why still explains the last reply
    why_reply = manager.respond("test", "a", "/why")
    assert why_reply.text.endswith("Echoed 'again', the last of 3 turns.")
    assert why_reply.fixed_width and not manager.respond("test", "a", "/history").fixed_width  # /why is a table


def test_a_blocked_user_is_neither_answered_nor_stored(store: ScratchDatabase) -> None:
    generator = EchoGenerator()
    manager = DialogueManager(generator, store.transaction)
    with store.transaction() as writer:
        writer.set_blocked("test", "troll", blocked=True)
    assert manager.respond("test", "troll", "hello?") == NOTHING
    assert manager.respond("test", "troll", "/export") == NOTHING
    assert generator.calls == [] and store.conversations() == []


class CountingEcho(EchoGenerator):
    """An echo that fails while ``fail`` is set, as a process killed during generation would stop."""

    fail = False

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        if self.fail:
            raise RuntimeError("killed mid-generation")
        return super().reply(history, settings)


@pytest.mark.reliability
def test_a_message_delivered_again_after_a_restart_is_answered_once(database_url: str) -> None:
    """Telegram delivers a message again when the bot stopped before confirming it. Each "restart" is a new
    engine and manager over the same database."""

    def restart(generator: EchoGenerator) -> DialogueManager:
        return DialogueManager(generator, sql_transaction(open_database(database_url)))

    generator = CountingEcho()
    first = restart(generator).respond("telegram", "9", "hello", message_id="1")
    restart(generator).delivered(first, "2")
    assert restart(generator).respond("telegram", "9", "hello", message_id="1") == Reply(
        "echo: hello", turn_id=first.turn_id, send=False
    )  # answered and delivered: nothing is sent again

    second = restart(generator).respond("telegram", "9", "still there?", message_id="3")  # stopped before sending
    assert restart(generator).respond("telegram", "9", "still there?", message_id="3") == second  # sent, not remade

    generator.fail = True
    with pytest.raises(RuntimeError):
        restart(generator).respond("telegram", "9", "and now?", message_id="5")  # stored, never answered
    generator.fail = False
    third = restart(generator).respond("telegram", "9", "and now?", message_id="5")
    assert third.text == "echo: and now?" and third.send
    assert len(generator.calls) == 3  # each message generated once
    with sql_transaction(open_database(database_url))() as store:
        (conversation,) = store.conversations()
    assert [turn.text for turn in conversation.turns] == [
        "hello",
        "echo: hello",
        "still there?",
        "echo: still there?",
        "and now?",
        "echo: and now?",
    ]


@pytest.mark.reliability
def test_stats_and_model_answer_admins_only(store: ScratchDatabase) -> None:
    manager = DialogueManager(EchoGenerator(), store.transaction)
    manager.respond("test", "a", "hello")
    assert manager.respond("test", "a", "/stats").text == "Only the bot's admins can use that command."
    stats = manager.respond("test", "root", "/stats", admin=True).text.splitlines()
    assert "conversations: 1" in stats and "messages: 2" in stats and "users: 2" in stats
    assert manager.respond("test", "root", "/model", admin=True).text == "Model: echo\nDefault decoding: mode greedy."


def test_history_shows_the_context_the_model_sees_or_the_last_n_turns(store: ScratchDatabase) -> None:
    manager = DialogueManager(EchoGenerator(history_turns=3), store.transaction)
    assert manager.respond("test", "a", "/history").text == EMPTY_EXPORT_TEXT
    manager.respond("test", "a", "one")
    manager.respond("test", "a", "two")
    assert manager.respond("test", "a", "/history").text == "bot: echo: one\nyou: two\nbot: echo: two"
    assert manager.respond("test", "a", "/history 1").text == "bot: echo: two"
    assert (
        manager.respond("test", "a", "/history lots").text
        == "Write /history, or /history N for the last N turns (1-1000)."
    )
