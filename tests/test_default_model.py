"""The shipped default model: small enough, loads, answers, its recorded figures still hold, and `chatbot chat`
works with it out of the box."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from chatbot.cli import cli, default_model_dir
from chatbot.dialogue.types import Role, Turn
from chatbot.generation import ResponseGenerator
from chatbot.reply_quality import is_looping

PROMPTS = ["hello", "how are you?", "what do you do for fun?", "do you have any pets?", "where are you from?"]
MAX_BYTES = 30_000_000  # the cap for data/: 30 MB, read as decimal megabytes, the stricter reading


def test_shipped_model_is_within_the_size_cap() -> None:
    directory = default_model_dir()
    assert directory == Path(__file__).resolve().parent.parent / "data" / "default-model"
    assert sum(path.stat().st_size for path in directory.iterdir()) <= MAX_BYTES


def test_shipped_weights_are_stored_in_fp16_as_its_config_says() -> None:
    config = json.loads((default_model_dir() / "config.json").read_text())
    stored = torch.load(default_model_dir() / "model.pt", weights_only=True)
    assert config["train"]["weights"] == "fp16"
    assert {tensor.dtype for tensor in stored.values()} == {torch.float16}


def test_shipped_model_replies_to_every_prompt() -> None:
    torch.manual_seed(0)  # the model's decoding default may sample
    generator = ResponseGenerator(default_model_dir(), quantized=True)  # as the chat and the bot run it
    for prompt in PROMPTS:
        reply = generator.reply([Turn(Role.USER, prompt)]).text
        assert reply and reply.strip(), prompt
        assert "\n" not in reply and not is_looping(reply), reply


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


def test_the_shipped_bot_says_who_it_is_from_its_persona(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CHATBOT_PERSONA", raising=False)
    result = CliRunner().invoke(
        cli, ["chat", "--db", f"sqlite:///{tmp_path / 'c.db'}"], input="what's your name?\nare you a robot?\n"
    )
    assert result.exit_code == 0, result.output
    name, robot = result.stdout.splitlines()
    assert name == "i'm chitchat, a chatbot. what's your name?"
    assert robot.startswith("i'm a chatbot, not a person")


def test_recorded_figures_match_a_fresh_eval_of_a_slice() -> None:
    """evaluation.json (bench/default_model_eval.py) holds `chatbot eval` of a slice of the test split; measured
    again now, it gives the same perplexity and reply figures (sampling is seeded; threads may round differently)."""
    recorded = json.loads((default_model_dir() / "evaluation.json").read_text())["slice"]
    result = CliRunner().invoke(cli, ["eval", "--model", str(default_model_dir()), *recorded["arguments"]])
    assert result.exit_code == 0, result.output
    fresh, expected = json.loads(result.stdout), recorded["result"]
    assert fresh["pairs"] == expected["pairs"] and fresh["words"] == expected["words"]
    assert fresh["word_perplexity"] == pytest.approx(expected["word_perplexity"], rel=0.005)
    assert fresh["replies"]["decode"] == expected["replies"]["decode"]
    for name in ("distinct_1", "distinct_2", "generic_rate", "empty_rate", "looping_rate", "unigram_f1"):
        assert fresh["replies"][name] == pytest.approx(expected["replies"][name], abs=0.02), name
