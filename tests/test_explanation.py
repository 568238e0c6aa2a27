"""Explanation: a reply taken apart by the real (tiny, trained) model, and its text table for /why."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.dialogue.types import Role, Turn
from chatbot.explanation import ALTERNATIVES, ATTENDED, CONSIDERED, explain, render
from chatbot.generation import ResponseGenerator
from chatbot.training.checkpoint import ModelBundle

QUESTION, ANSWER = "do you have any pets?", "yes, a cat named pepper"


def source_ids(bundle: ModelBundle, question: str) -> list[int]:
    """The piece ids of a one-turn context asking ``question``."""
    return bundle.tokenizer.encode(f"<usr> {question}")


def test_each_reply_piece_has_its_attention_probability_and_rivals(tiny_model_dir: Path) -> None:
    generator = ResponseGenerator(tiny_model_dir)
    bundle = generator.load()
    explanation = explain(bundle.model, bundle.tokenizer, source_ids(bundle, QUESTION), ANSWER, generator.decode_config)
    pieces = bundle.tokenizer.pieces(bundle.tokenizer.encode(ANSWER))
    assert [step.piece for step in explanation.steps] == [*pieces, "</s>"]
    assert explanation.context == bundle.tokenizer.pieces(bundle.tokenizer.encode(f"<usr> {QUESTION}"))
    for step in explanation.steps:
        assert 0 < step.probability <= 1
        weights = [weight for _, weight in step.attended]
        assert len(weights) == ATTENDED and weights == sorted(weights, reverse=True)
        assert all(0 <= weight <= 1 for weight in weights) and sum(weights) <= 1 + 1e-5
        assert {piece for piece, _ in step.attended} <= set(explanation.context)
        assert len(step.considered) == CONSIDERED and step.piece not in {piece for piece, _ in step.considered}
    # The tiny model learned this exchange: every piece of the answer was its first choice.
    assert all(step.probability > max(p for _, p in step.considered) for step in explanation.steps)
    assert 1 <= len(explanation.alternatives) <= ALTERNATIVES
    assert ANSWER in [text for text, _ in explanation.alternatives]
    assert all(0 < confidence <= 1 for _, confidence in explanation.alternatives)


def test_the_table_is_readable_text(tiny_model_dir: Path) -> None:
    table = ResponseGenerator(tiny_model_dir).explain([Turn(Role.USER, QUESTION)], ANSWER)
    lines = table.splitlines()
    assert lines[0].split() == ["piece", "p", "looked", "at", "(attention)", "also", "likely", "(p)"]
    assert set(lines[1]) == {"-"}
    assert lines[2].startswith("_yes") or lines[2].startswith("_")
    assert any(line.startswith("</s>") for line in lines)
    beam = lines.index("Replies a beam search finds for this context (confidence):")
    assert any(line.strip().endswith(ANSWER) for line in lines[beam + 1 :])
    assert "\u2581" not in table  # the word-start mark is shown as _


@pytest.mark.parametrize("reply", ["", "zebra quantum xylophone"])
def test_any_reply_can_be_explained(tiny_model_dir: Path, reply: str) -> None:
    """An empty reply or words the model would never say are explained too (low probabilities, no error)."""
    generator = ResponseGenerator(tiny_model_dir)
    bundle = generator.load()
    explanation = explain(bundle.model, bundle.tokenizer, source_ids(bundle, QUESTION), reply, generator.decode_config)
    assert explanation.steps[-1].piece == "</s>"
    assert render(explanation).count("\n") >= 4
