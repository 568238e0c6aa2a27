"""Trainer: teacher-forced training of a Seq2Seq with Adam, gradient clipping, validation, and best-model keeping.

One step: a padded batch runs through the whole network at once (``Seq2Seq.forward``), the masked cross-entropy of
its real target pieces (optionally label-smoothed) is averaged per piece, the gradient is clipped, and AdamW updates
the weights at the rate the schedule sets. Validation runs every ``valid_every`` steps (or each epoch); the weights
with the lowest validation loss are kept, and ``patience`` validations without improvement end the run.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from chatbot.config import TrainConfig
from chatbot.evaluation import batches_nll, masked_nll, reference_words
from chatbot.model.seq2seq import Seq2Seq
from chatbot.text.batching import Batch, EncodedPair, bucketed_batches
from chatbot.text.tokenizer import Tokenizer
from chatbot.training.schedule import LearningRateSchedule

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when a GPU is present, else the CPU; any other name is taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain fp32."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return torch.bfloat16 if precision == "bf16" or native_bf16 else None


@dataclass
class TrainSummary:
    """What happened during training, written to the model directory's metrics."""

    steps: int = 0
    epochs: float = 0.0
    seconds: float = 0.0
    target_tokens: int = 0
    best_valid_loss: float | None = None
    stopped_by: str = "epochs"
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Trains ``model`` on encoded pairs; the caller builds the model and saves the result."""

    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, config: TrainConfig) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.schedule = LearningRateSchedule(self.optimizer, config.warmup_steps, config.lr_schedule)
        self.device = next(model.parameters()).device
        self.dtype = autocast_dtype(config.precision, self.device)
        self._best_state = copy.deepcopy(model.state_dict())
        self._stalled = 0  # validations since the last improvement
        self._valid_words = 0  # words of the validation replies, counted once per fit
        self._window_loss, self._window_pieces = 0.0, 0  # training loss since the last validation, piece-weighted

    def step(self, batch: Batch) -> tuple[float, int]:
        """One optimisation step; returns the mean (label-smoothed) loss per target piece and the piece count."""
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.model(batch.source.to(self.device), batch.target_in.to(self.device))
        target = batch.target_out.to(self.device)
        total, pieces = masked_nll(logits, target, self.tokenizer.pad_id, self.config.label_smoothing)
        loss = total / max(pieces, 1)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.optimizer.step()
        self.schedule.after_step()
        return float(loss.detach()), pieces

    def validate(self, batches: Sequence[Batch]) -> float:
        """Mean validation loss per piece (plain NLL, never smoothed)."""
        total, pieces = self._validation_nll(batches)
        return total / max(pieces, 1)

    def _validation_nll(self, batches: Sequence[Batch]) -> tuple[float, int]:
        """Total NLL and piece count over the validation batches."""
        with self._autocast():
            return batches_nll(self.model, batches, self.tokenizer.pad_id)

    def fit(self, train: Sequence[EncodedPair], valid: Sequence[EncodedPair]) -> TrainSummary:
        """Train until the epochs, ``max_steps``, the time budget or the patience run out; leaves the best weights
        loaded."""
        rng = random.Random(self.config.seed)
        valid_batches = bucketed_batches(valid, self.config.batch_size, self.tokenizer, rng=None)
        self._valid_words = reference_words(self.tokenizer, valid)
        summary, started = TrainSummary(), time.monotonic()
        for epoch in range(self.config.epochs):
            batches = bucketed_batches(train, self.config.batch_size, self.tokenizer, rng, self.config.batch_tokens)
            stop = self._run_epoch(epoch, batches, valid_batches, summary, started)
            if stop:
                summary.stopped_by = stop
                break
        self.model.load_state_dict(self._best_state)
        return summary

    def _run_epoch(
        self,
        epoch: int,
        batches: Sequence[Batch],
        valid_batches: Sequence[Batch],
        summary: TrainSummary,
        started: float,
    ) -> str:
        """Train on one epoch's batches; returns why training must stop, or "" to go on."""
        progress = tqdm(
            batches, desc=f"epoch {epoch + 1}/{self.config.epochs}", unit="batch", disable=None, leave=False
        )
        for index, batch in enumerate(progress):
            loss, pieces = self.step(batch)
            self._window_loss, self._window_pieces = self._window_loss + loss * pieces, self._window_pieces + pieces
            summary.steps, summary.target_tokens = summary.steps + 1, summary.target_tokens + pieces
            summary.epochs = epoch + (index + 1) / len(batches)
            summary.seconds = time.monotonic() - started
            speed = summary.target_tokens / max(summary.seconds, 1e-9)
            progress.set_postfix(loss=f"{loss:.3f}", tokens_per_s=f"{speed:.0f}", refresh=False)
            stop = self._stop_reason(summary)
            if stop or index + 1 == len(batches) or self._validation_due(summary.steps):
                window_loss = self._window_loss / max(self._window_pieces, 1)
                self._window_loss, self._window_pieces = 0.0, 0
                early_stop = self._checkpoint(summary, window_loss, valid_batches)  # always runs: the last one counts
                stop = stop or early_stop
            if stop:
                return stop
        return ""

    def _checkpoint(self, summary: TrainSummary, train_loss: float, valid_batches: Sequence[Batch]) -> str:
        """Validate, keep the best weights, adapt the schedule; returns "early_stopping" when patience ran out."""
        valid_loss = self._record(summary, train_loss, valid_batches)
        improved = valid_loss is None or summary.best_valid_loss is None or valid_loss < summary.best_valid_loss
        if improved:
            summary.best_valid_loss = valid_loss if valid_loss is not None else summary.best_valid_loss
            self._best_state, self._stalled = copy.deepcopy(self.model.state_dict()), 0
        else:
            self._stalled += 1
        if valid_loss is not None:
            self.schedule.after_validation(valid_loss)
        return "early_stopping" if self.config.patience and self._stalled >= self.config.patience else ""

    def _record(self, summary: TrainSummary, train_loss: float, valid_batches: Sequence[Batch]) -> float | None:
        """Append a history entry, with the validation loss when there is validation data (which it returns).

        Without validation data every checkpoint counts as the best, so the final weights are kept: training loss
        rewards memorising and is no signal to choose a model by.
        """
        entry: dict[str, Any] = {
            "step": summary.steps,
            "epoch": round(summary.epochs, 3),
            "train_loss": round(train_loss, 4),
            "learning_rate": self.schedule.learning_rate,
            "target_tokens_per_second": round(summary.target_tokens / max(summary.seconds, 1e-9), 1),
        }
        summary.history.append(entry)
        if not valid_batches:
            logger.info("progress (no validation data): %s", entry)
            return None
        total, pieces = self._validation_nll(valid_batches)
        valid_loss = total / max(pieces, 1)
        entry.update(
            valid_loss=round(valid_loss, 4),
            valid_token_ppl=round(math.exp(min(valid_loss, 50.0)), 2),
            valid_word_ppl=round(math.exp(min(total / max(self._valid_words, 1), 50.0)), 2),
        )
        logger.info("validation: %s", entry)
        return valid_loss

    def _stop_reason(self, summary: TrainSummary) -> str:
        if self.config.max_steps and summary.steps >= self.config.max_steps:
            return "max_steps"
        if self.config.time_budget_minutes and summary.seconds >= 60 * self.config.time_budget_minutes:
            return "time_budget"
        return ""

    def _validation_due(self, steps: int) -> bool:
        return bool(self.config.valid_every) and steps % self.config.valid_every == 0

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)
