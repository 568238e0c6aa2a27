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


def test_an_unsure_reply_is_withheld_below_min_confidence(tiny_model_dir: Path) -> None:
    from chatbot.config import DecodeConfig

    history = [Turn(Role.USER, "whatever, something unseen")]
    ((text, confidence),) = ResponseGenerator(tiny_model_dir).generate_scored(["<usr> whatever, something unseen"])
    assert 0 < confidence < 1
    assert ResponseGenerator(tiny_model_dir, DecodeConfig(min_confidence=confidence * 0.99)).reply(history) == text
    assert ResponseGenerator(tiny_model_dir, DecodeConfig(min_confidence=confidence * 1.01)).reply(history) is None


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_every_strategy_replies_from_the_generator(tiny_model_dir: Path, strategy: str) -> None:
    from chatbot.config import DecodeConfig

    config = DecodeConfig(strategy=strategy, block_ngram=3, block_context_ngram=3, n_best=3, mmi_weight=0.3)
    reply = ResponseGenerator(tiny_model_dir, config).reply([Turn(Role.USER, "do you have any pets?")])
    assert reply and reply.strip()
