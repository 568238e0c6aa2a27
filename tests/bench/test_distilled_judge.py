"""bench/distilled_judge.py: the decoder states it pools, the loss it teaches the choice with, and its recorder in
the real reply path (the tiny model with its reply index), recording pools and weighing a head into the choice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from chatbot import generation
from chatbot.config import DecodeConfig
from chatbot.dialogue.types import Role, Turn
from chatbot.generation import ResponseGenerator
from tests.bench.scripts import load_script

distilled = load_script("distilled_judge.py")


def test_states_are_pooled_over_the_reply_and_its_end_only() -> None:
    # Two candidates of 1 and 3 pieces: steps 0..1 and 0..3 are real (bos, pieces; the last predicts eos).
    joined = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4)  # hidden 2: outputs 0:2, contexts 2:4
    combined = -joined[..., :2]
    pooled = distilled.pooled_states(joined, combined, [1, 3])
    assert pooled.shape == (2, 7 * 2)
    outputs, contexts = joined[..., :2], joined[..., 2:]
    first, last = pooled[0].reshape(7, 2), pooled[1].reshape(7, 2)
    assert torch.equal(first[0], outputs[0, 0]) and torch.equal(first[1], outputs[0, 1])  # after bos; at the end
    assert torch.equal(first[2], outputs[0, :2].mean(0)) and torch.equal(first[3], contexts[0, :2].mean(0))
    assert torch.equal(first[4], contexts[0, 1]) and torch.equal(first[5], combined[0, :2].mean(0))
    assert torch.equal(last[1], outputs[1, 3]) and torch.equal(last[2], outputs[1].mean(0))
    assert torch.equal(last[6], combined[1, 3])


def test_the_loss_is_least_where_the_head_gives_the_teachers_choice() -> None:
    wanted = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    mask = torch.tensor([[True, True, True, False]])
    loss = distilled.pool_loss
    assert loss(wanted + 5.0, wanted, mask) == pytest.approx(float(loss(wanted, wanted, mask)))  # per pool, shifts
    assert loss(wanted, wanted, mask) < loss(wanted.flip(1), wanted, mask)
    ignored = wanted.clone()
    ignored[0, 3] = 100.0  # a padding slot changes nothing
    assert loss(ignored, wanted, mask) == pytest.approx(float(loss(wanted, wanted, mask)))


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """generation's scored and choices_for as the recorder replaces them, restored afterwards."""
    monkeypatch.setattr(generation, "scored", generation.scored)
    monkeypatch.setattr(generation.ResponseGenerator, "choices_for", generation.ResponseGenerator.choices_for)
    yield


class Longest(torch.nn.Module):
    """A stand-in head: the more pieces, the better (the parts' fifth column is pieces / 10)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features[..., -2] * 1000.0


def test_the_recorder_keeps_each_pool_and_weighs_a_head_into_the_choice(
    tiny_indexed_model_dir: Path, restored: None
) -> None:
    config = DecodeConfig(candidates="both", retrieved=5, mmi_weight=0.5)
    history = [Turn(Role.USER, "hi there"), Turn(Role.BOT, "hello!"), Turn(Role.USER, "do you have any pets?")]
    shipped = ResponseGenerator(tiny_indexed_model_dir, config).reply(history).text
    recorder = distilled.Recorder()
    assert ResponseGenerator(tiny_indexed_model_dir, config).reply(history).text == shipped
    (pool,) = recorder.pools
    hidden = 7 * ResponseGenerator(tiny_indexed_model_dir).load().model.config.hidden_size
    assert pool["features"].shape == (len(pool["texts"]), hidden + distilled.SEMANTIC)
    assert pool["parts"].shape == (len(pool["texts"]), distilled.PARTS) and shipped in pool["texts"]
    assert pool["turns"] == ["hi there", "hello!", "do you have any pets?"]
    assert pool["texts"][int(pool["parts"][:, 0].argmax())] == shipped  # the shipped score is the first part
    distilled.Recorder(Longest(), weight=1.0)
    longest = ResponseGenerator(tiny_indexed_model_dir, config).reply(history).text
    assert longest == pool["texts"][int(pool["parts"][:, 4].argmax())]
