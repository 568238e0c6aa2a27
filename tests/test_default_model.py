"""The shipped default model: small enough, loads, answers, and `chatbot chat` works with it out of the box."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from chatbot.cli import cli, default_model_dir
from chatbot.dialogue.types import Role, Turn
from chatbot.generation import ResponseGenerator

PROMPTS = ["hello", "how are you?", "what do you do for fun?", "do you have any pets?", "where are you from?"]
MAX_BYTES = 30 * 1024 * 1024


def test_shipped_model_is_within_the_size_cap() -> None:
    directory = default_model_dir()
    assert directory == Path(__file__).resolve().parent.parent / "data" / "default-model"
    assert sum(path.stat().st_size for path in directory.iterdir()) <= MAX_BYTES


def test_shipped_model_replies_to_every_prompt() -> None:
    generator = ResponseGenerator(default_model_dir())
    for prompt in PROMPTS:
        reply = generator.reply([Turn(Role.USER, prompt)]).text
        assert reply and reply.strip(), prompt
        assert "\n" not in reply


def test_first_run_chat_replies_and_stores_both_turns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CHATBOT_DB", "CHATBOT_MODEL", "CHATBOT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    result = CliRunner().invoke(cli, ["chat"], input="hello\nhow are you?\n")
    assert result.exit_code == 0, result.output
    replies = result.stdout.splitlines()
    assert len(replies) == 2 and all(reply.strip() for reply in replies)
    database = tmp_path / "data" / "chatbot" / "chatbot.sqlite3"
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT role, text FROM messages ORDER BY id").fetchall()
    assert rows == [("user", "hello"), ("bot", replies[0]), ("user", "how are you?"), ("bot", replies[1])]
