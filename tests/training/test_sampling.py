"""Scheduled sampling: the teacher-forcing schedules, the mixing of gold and predicted inputs, and training with it."""

from __future__ import annotations

import itertools

import pytest
import torch

from chatbot.training.sampling import mix_inputs, teacher_forcing_ratio

PAD, BOS = 0, 2


@pytest.mark.parametrize("schedule", ["linear", "inverse_sigmoid"])
def test_ratio_falls_from_one_to_the_floor(schedule: str) -> None:
    ratios = [teacher_forcing_ratio(schedule, step, 1000, 0.25) for step in range(0, 3001, 50)]
    assert ratios[0] == pytest.approx(1.0, abs=0.01)
    assert all(later <= earlier for earlier, later in itertools.pairwise(ratios))
    assert ratios[-1] == pytest.approx(0.25, abs=1e-3)
    assert min(ratios) >= 0.25


def test_linear_reaches_the_floor_at_decay_steps_and_inverse_sigmoid_is_halfway_at_half() -> None:
    assert teacher_forcing_ratio("linear", 500, 1000, 0.0) == pytest.approx(0.5)
    assert teacher_forcing_ratio("linear", 1000, 1000, 0.0) == 0.0
    assert teacher_forcing_ratio("inverse_sigmoid", 500, 1000, 0.0) == pytest.approx(0.5, abs=1e-6)
    assert teacher_forcing_ratio("off", 10**9, 1, 0.0) == 1.0


def test_mixing_keeps_bos_and_padding_and_aligns_predictions_with_the_next_input() -> None:
    target_in = torch.tensor([[BOS, 5, 6, 7], [BOS, 8, PAD, PAD]])
    predicted = torch.tensor([[15, 16, 17, 18], [19, 20, 21, 22]])  # the model's guess for each next piece
    assert torch.equal(mix_inputs(target_in, predicted, 1.0, PAD), target_in)
    own = mix_inputs(target_in, predicted, 0.0, PAD)
    assert own.tolist() == [[BOS, 15, 16, 17], [BOS, 19, PAD, PAD]]


def test_mixing_replaces_about_the_expected_share() -> None:
    torch.manual_seed(0)
    target_in = torch.full((200, 50), 5)
    target_in[:, 0] = BOS
    mixed = mix_inputs(target_in, torch.full((200, 50), 9), 0.7, PAD)
    share = float((mixed[:, 1:] == 9).float().mean())
    assert share == pytest.approx(0.3, abs=0.02)
