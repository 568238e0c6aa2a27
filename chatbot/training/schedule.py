"""Schedule: the learning rate over a run — a linear warmup, then constant, decaying, or halved when validation stalls.

The rate after ``t`` optimiser steps is ``base × warmup(t) × decay(t) × plateau``:
- warmup rises linearly from base/W to the base rate over the first W steps (as torch's ``LinearLR`` does);
- decay is 1 (``constant``, ``plateau``), sqrt(W / t) after warmup (``inverse_sqrt``, Vaswani et al. 2017: no end
  needs to be known), or a half cosine from 1 to 0 between the end of warmup and the run's last step (``cosine``;
  the trainer sets that horizon from ``max_steps`` or the epochs);
- plateau halves whenever a validation does not improve on the best so far (``plateau`` only).
PyTorch's ``LambdaLR`` applies the product; this class owns the factors, so all of them save and resume together.
"""

from __future__ import annotations

import math
from typing import Any

import torch

PLATEAU_FACTOR = 0.5
PLATEAU_THRESHOLD = 1e-4  # relative improvement needed to count as better (ReduceLROnPlateau's default)


class LearningRateSchedule:
    """Call ``after_step`` after every optimiser step and ``after_validation`` with each validation loss."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, warmup_steps: int, schedule: str, total_steps: int = 0
    ) -> None:
        self.warmup_steps = warmup_steps
        self.schedule = schedule
        self.total_steps = total_steps  # the cosine horizon; 0 until the trainer knows it
        self.plateau_scale = 1.0
        self.best_loss = math.inf
        self.optimizer = optimizer
        self._lambda = torch.optim.lr_scheduler.LambdaLR(optimizer, self.factor)

    def factor(self, step: int) -> float:
        """The multiple of the base rate after ``step`` optimiser steps."""
        warmup = self.warmup_steps
        rise = 1.0 / warmup + (1.0 - 1.0 / warmup) * min(step, warmup) / warmup if warmup else 1.0
        return rise * self._decay(step) * self.plateau_scale

    def _decay(self, step: int) -> float:
        if self.schedule == "inverse_sqrt":
            start = max(self.warmup_steps, 1)
            return math.sqrt(start / max(step, start))
        if self.schedule == "cosine" and self.total_steps > self.warmup_steps:
            progress = min(max(step - self.warmup_steps, 0) / (self.total_steps - self.warmup_steps), 1.0)
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    def after_step(self) -> None:
        self._lambda.step()

    def after_validation(self, valid_loss: float) -> None:
        if valid_loss < self.best_loss * (1.0 - PLATEAU_THRESHOLD):
            self.best_loss = valid_loss
        elif self.schedule == "plateau":
            self.plateau_scale *= PLATEAU_FACTOR
            self._apply()

    def set_horizon(self, total_steps: int) -> None:
        """The run's last step, which the cosine decay ends at."""
        self.total_steps = total_steps
        self._apply()

    def _apply(self) -> None:
        """Set the rate for the current step again after a factor changed between steps."""
        for group, base in zip(self.optimizer.param_groups, self._lambda.base_lrs, strict=True):
            group["lr"] = base * self.factor(self._lambda.last_epoch)

    def state_dict(self) -> dict[str, Any]:
        """Where the schedule is, for resuming a run."""
        return {
            "step": self._lambda.last_epoch,
            "plateau_scale": self.plateau_scale,
            "best_loss": self.best_loss,
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._lambda.last_epoch = int(state["step"])
        self.plateau_scale, self.best_loss = float(state["plateau_scale"]), float(state["best_loss"])
        self.total_steps = int(state["total_steps"])
        self._apply()

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])
