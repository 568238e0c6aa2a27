"""The learning-rate schedule: linear warmup to the base rate, then constant, decaying, or halved on a stalled
validation; and its state, saved and restored mid-run."""

from __future__ import annotations

import itertools

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


def rates_over(schedule: LearningRateSchedule, steps: int) -> list[float]:
    rates = [schedule.learning_rate]
    for _ in range(steps):
        schedule.optimizer.step()
        schedule.after_step()
        rates.append(schedule.learning_rate)
    return rates


def test_inverse_sqrt_decays_after_warmup_without_knowing_the_end() -> None:
    rates = rates_over(LearningRateSchedule(optimizer(), warmup_steps=4, schedule="inverse_sqrt"), 16)
    assert rates[4] == 1.0
    assert rates[16] == pytest.approx(0.5)  # sqrt(4 / 16)
    assert all(later < earlier for earlier, later in itertools.pairwise(rates[4:]))


def test_cosine_falls_from_the_base_rate_to_zero_at_the_horizon() -> None:
    schedule = LearningRateSchedule(optimizer(), warmup_steps=2, schedule="cosine")
    schedule.set_horizon(12)
    rates = rates_over(schedule, 14)
    assert rates[2] == 1.0
    assert rates[7] == pytest.approx(0.5)  # halfway between the end of warmup and the horizon
    assert rates[12] == pytest.approx(0.0) and rates[14] == pytest.approx(0.0)


@pytest.mark.parametrize("name", ["plateau", "cosine", "inverse_sqrt"])
def test_a_restored_schedule_continues_where_the_saved_one_was(name: str) -> None:
    first = LearningRateSchedule(optimizer(), warmup_steps=3, schedule=name)
    first.set_horizon(20)
    rates_over(first, 7)
    first.after_validation(2.0)
    first.after_validation(2.5)
    second = LearningRateSchedule(optimizer(), warmup_steps=3, schedule=name)
    second.load_state_dict(first.state_dict())
    assert second.learning_rate == first.learning_rate
    assert rates_over(second, 5) == pytest.approx(rates_over(first, 5))
