"""Scheduled sampling (Bengio et al. 2015): feed the decoder some of its own predictions while training, so it
learns to recover from its mistakes instead of only ever seeing the gold prefix.

The teacher-forcing ratio (the chance that a position is fed the gold previous piece) starts at 1 and decays with
the step: ``linear`` falls straight to ``min_teacher_forcing`` at ``decay_steps``; ``inverse_sigmoid`` follows
k / (k + exp(step / k)), with k chosen so the curve is halfway down at ``decay_steps / 2``, then is scaled into
[min_teacher_forcing, 1].

Batching is kept with the two-pass method (Mihaylova & Liu 2019): a first teacher-forced pass without gradients
predicts every position at once, each decoder input is then the gold piece or the model's prediction of it, and
the training pass runs over the mixed inputs — again the whole reply in one call.
"""

from __future__ import annotations

import math

import torch


def teacher_forcing_ratio(schedule: str, step: int, decay_steps: int, floor: float) -> float:
    """The probability of feeding the gold piece at training step ``step`` (1.0 when the schedule is off)."""
    if schedule == "linear":
        return max(floor, 1.0 - (1.0 - floor) * step / decay_steps)
    if schedule == "inverse_sigmoid":
        k = _inverse_sigmoid_k(decay_steps / 2)
        return floor + (1.0 - floor) * k / (k + math.exp(min(step / k, 700.0)))
    return 1.0


def _inverse_sigmoid_k(midpoint: float) -> float:
    """The k >= 1 for which k / (k + exp(midpoint / k)) = 1/2, that is k·ln k = midpoint (by bisection)."""
    low, high = 1.0, max(2.0, midpoint)
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if middle * math.log(middle) < midpoint else (low, middle)
    return (low + high) / 2


def mix_inputs(target_in: torch.Tensor, predicted: torch.Tensor, ratio: float, pad_id: int) -> torch.Tensor:
    """Replace decoder inputs by the model's own predictions with probability 1 - ratio.

    target_in (batch, tgt_len): bos then the gold pieces; predicted (batch, tgt_len): the model's most likely next
    piece at each position, so the prediction of input t is ``predicted[:, t - 1]``. The first input (bos) and
    padding are never replaced. Returns (batch, tgt_len).
    """
    own = torch.cat([target_in[:, :1], predicted[:, :-1]], dim=1)  # (batch, tgt_len): aligned with target_in
    sample = torch.rand(target_in.shape, device=target_in.device) >= ratio
    sample[:, 0] = False
    sample &= target_in != pad_id
    return torch.where(sample, own, target_in)
