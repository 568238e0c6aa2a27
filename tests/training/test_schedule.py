"""The learning-rate schedule: linear warmup to the base rate, then constant or halved on a stalled validation."""

from __future__ import annotations

import pytest
import torch

from chatbot.training.schedule import LearningRateSchedule


def optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def test_warmup_rises_linearly_then_holds() -> None:
    adamw = optimizer()
    schedule = LearningRateSchedule(adamw, warmup_steps=4, schedule="constant")
    rates = [schedule.learning_rate]
    for _ in range(6):
        adamw.step()  # the order the trainer uses: the optimiser first, then the schedule
        schedule.after_step()
        rates.append(schedule.learning_rate)
    # torch's LinearLR: from base/4 to the base rate in 4 equal steps, then unchanged.
    assert rates == pytest.approx([0.25, 0.4375, 0.625, 0.8125, 1.0, 1.0, 1.0])


def test_plateau_halves_when_validation_stalls() -> None:
    schedule = LearningRateSchedule(optimizer(), warmup_steps=0, schedule="plateau")
    for loss in (3.0, 2.0):  # improving: the rate holds
        schedule.after_validation(loss)
    assert schedule.learning_rate == 1.0
    schedule.after_validation(2.5)
    assert schedule.learning_rate == 0.5
    schedule.after_validation(2.6)
    assert schedule.learning_rate == 0.25


def test_constant_ignores_validation() -> None:
    schedule = LearningRateSchedule(optimizer(), warmup_steps=0, schedule="constant")
    for loss in (1.0, 2.0, 3.0):
        schedule.after_validation(loss)
    assert schedule.learning_rate == 1.0
