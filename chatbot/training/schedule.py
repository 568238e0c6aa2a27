"""Schedule: the learning rate over a run — a linear warmup, then constant or halved whenever validation stalls.

Both parts are PyTorch's own schedulers; they compose because each multiplies the rate it finds.
"""

from __future__ import annotations

from typing import Any

import torch

PLATEAU_FACTOR = 0.5


class LearningRateSchedule:
    """Call ``after_step`` after every optimiser step and ``after_validation`` with each validation loss."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int, schedule: str) -> None:
        self.warmup = (
            torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup_steps, total_iters=warmup_steps)
            if warmup_steps > 0
            else None
        )
        # patience=0: one validation without improvement is enough to halve; the trainer's own patience stops runs.
        self.plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=PLATEAU_FACTOR, patience=0)
            if schedule == "plateau"
            else None
        )
        self.optimizer = optimizer

    def after_step(self) -> None:
        if self.warmup is not None and self.warmup.last_epoch < self.warmup.total_iters:
            self.warmup.step()

    def after_validation(self, valid_loss: float) -> None:
        if self.plateau is not None:
            self.plateau.step(valid_loss)

    def state_dict(self) -> dict[str, Any]:
        """Where both schedulers are, for resuming a run."""
        return {
            "warmup": self.warmup.state_dict() if self.warmup is not None else None,
            "plateau": self.plateau.state_dict() if self.plateau is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.warmup is not None and state.get("warmup") is not None:
            self.warmup.load_state_dict(state["warmup"])
        if self.plateau is not None and state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])
