"""ResponseGenerator: cheap construction, lazy cached weights, non-empty replies that follow the training data."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.dialogue.types import Role, Turn
from chatbot.errors import ModelError
from chatbot.generation import ResponseGenerator


def test_weights_load_lazily_once(tiny_model_dir: Path) -> None:
    generator = ResponseGenerator(tiny_model_dir)
    assert generator._bundle is None
    assert generator.history_turns == 3
    first = generator.load()
    assert generator.load() is first


def test_replies_follow_the_training_conversations(tiny_model_dir: Path) -> None:
    generator = ResponseGenerator(tiny_model_dir)
    reply = generator.reply([Turn(Role.USER, "do you have any pets?")])
    assert reply == "yes, a cat named pepper"
    batch = generator.generate(["<usr> do you have any pets?", "<usr> whatever, something unseen"])
    assert batch[0] == reply
    assert all(text.strip() for text in batch)


def test_a_missing_model_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model directory"):
        ResponseGenerator(tmp_path / "missing")
