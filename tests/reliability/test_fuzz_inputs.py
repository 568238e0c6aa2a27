"""Hostile text through the core and the REPL, fuzzed with Hypothesis: control characters, lone surrogates,
right-to-left text, emoji, combining marks, empty and whitespace-only lines and 100k-character ones get a reply or a
clear message — never a crash, never more than 4096 characters — and what is stored is what was said."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chatbot.channels.repl import CHANNEL, run_piped
from chatbot.dialogue.commands import parse_command
from chatbot.dialogue.manager import MAX_MESSAGE_CHARS, DialogueManager
from chatbot.dialogue.types import Role
from chatbot.generation import ResponseGenerator
from chatbot.text.normalize import valid_unicode
from tests.database import ScratchDatabase

REPLY_LIMIT = 4096  # the longest message Telegram sends; no reply to a message may be longer
# Every code point but the surrogates, whose halves hypothesis draws separately below.
ANY_CHARACTER = st.characters(codec=None, exclude_categories=["Cs"])
HOSTILE = st.sampled_from(
    [
        "\u202eevil\u202c right-to-left override",
        "שלום, מה שלומך?",
        "مرحبا كيف حالك",
        "👩‍👩‍👧‍👦🏳️‍🌈 family and flag",
        "e" + "\u0301" * 500,  # one letter under 500 combining accents
        "\u200b\u200d\ufeff zero widths",
        "\x00\x01\x07\x1b[31mred\x1b[0m\x7f",
        "\ud83d lone high half, \udc00 lone low half",
        "",
        " \t\u00a0\u3000 ",
        "a" * MAX_MESSAGE_CHARS,
        "word " * 20_000,
        "x" * 100_000,
    ]
)
MESSAGES = st.one_of(HOSTILE, st.text(ANY_CHARACTER, max_size=300), st.text(st.characters(), max_size=50))


@pytest.fixture(scope="module")
def generator(tiny_model_dir: Path) -> ResponseGenerator:
    """The real model (tokenizer, network, search): odd text breaks there first, not in an echo."""
    return ResponseGenerator(tiny_model_dir)


@pytest.fixture(scope="module")
def database() -> ScratchDatabase:
    return ScratchDatabase()


USERS = itertools.count()  # each example talks as a new user, so its turns are its own


@given(text=MESSAGES)
@example(text="/history " + "9" * 5000)
def test_any_message_gets_a_bounded_reply_and_is_stored_when_it_fits(
    generator: ResponseGenerator, database: ScratchDatabase, text: str
) -> None:
    user = f"fuzz-{next(USERS)}"
    manager = DialogueManager(generator, database.transaction)
    reply = manager.respond(CHANNEL, user, text, message_id="1")
    assert reply.text.strip() and len(reply.text) <= REPLY_LIMIT
    stored = [turn for talk in database.conversations() if talk.external_id == user for turn in talk.turns]
    if len(text) > MAX_MESSAGE_CHARS:
        assert stored == [] and "at most 4,096" in reply.text
    elif parse_command(text) is None:
        assert [turn.role for turn in stored] == [Role.USER, Role.BOT]
        assert stored[0].text == valid_unicode(text)  # a lone surrogate becomes U+FFFD; nothing else changes
        assert stored[1].text == reply.text


@given(lines=st.lists(MESSAGES, max_size=4))
def test_piped_repl_answers_every_line_with_exactly_one_bounded_line(
    generator: ResponseGenerator, database: ScratchDatabase, lines: list[str]
) -> None:
    manager = DialogueManager(generator, database.transaction)
    # A file yields lines split at "\n" only, whatever other line breaks the text holds.
    physical = [line + "\n" for text in lines for line in text.split("\n")]
    asked = [line.strip() for line in physical if line.strip()]
    asked = asked[: next((i for i, line in enumerate(asked) if line.split()[0] in ("/quit", "/exit")), len(asked))]
    out = io.StringIO()
    run_piped(manager, f"fuzz-{next(USERS)}", physical, out)
    answers = out.getvalue().split("\n")
    assert answers.pop() == ""  # the output ends with a line break
    assert len(answers) == len(asked)
    assert all(answer.strip() and len(answer) <= REPLY_LIMIT for answer in answers)


def test_chat_command_survives_undecodable_bytes_nul_escapes_and_a_100k_line(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    stdin = b"hi \xff\xfe there\n\x00\x1b[2J\x07\n" + b"z" * 100_000 + b"\n" + "שלום 👋\n".encode() + b"/history 2\n"
    database = f"sqlite:///{tmp_path / 'chat.sqlite3'}"
    result = subprocess.run(
        [sys.executable, "-m", "chatbot", "chat", "--model", str(tiny_model_dir), "--db", database],
        input=stdin,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    answers = result.stdout.decode().splitlines()
    assert len(answers) == 5 and all(answer.strip() and len(answer) <= REPLY_LIMIT for answer in answers)
    assert "100,000 characters long" in answers[2]
    assert "you: שלום 👋" in answers[4]
    assert b"Traceback" not in result.stderr
