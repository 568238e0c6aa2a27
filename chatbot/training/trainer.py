"""Trainer: teacher-forced training of a Seq2Seq with AdamW, gradient clipping, validation, and best-model keeping.

One step: a padded batch runs through the whole network at once (``Seq2Seq.forward``), the masked cross-entropy of
its real target pieces (optionally label-smoothed) is averaged per piece, the gradient is clipped, and AdamW updates
the weights at the rate the schedule sets. With scheduled sampling some decoder inputs are the model's own
predictions (training/sampling.py).

``fit`` runs epochs; an epoch (``_run_epoch``) reads top to bottom: a step, then every ``valid_every`` steps (and at
the end of the epoch, and at any stop) a validation that keeps the weights with the lowest loss, then at each
validation and every ``checkpoint_every`` steps a checkpoint: the ``RunState`` (training/run_state.py: weights,
optimiser, schedules, loss scaler, progress, position in the data, RNG states) handed to the ``save`` callback; then
the stop, if any: ``max_steps``, the time budget, or ``patience`` validations without improvement.
``fit(..., resume=state)`` continues from a saved state exactly. Under torchrun the model is wrapped in DDP, each
rank trains on its shard of every epoch's batches, and the ranks agree on every stop (training/distributed.py).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from chatbot.config import TrainConfig
from chatbot.evaluation import batches_nll, masked_nll, reference_words
from chatbot.model.seq2seq import Seq2Seq
from chatbot.text.batching import Batch, EncodedPair, bucketed_batches
from chatbot.text.tokenizer import Tokenizer
from chatbot.training import distributed
from chatbot.training.distributed import World
from chatbot.training.run_state import (
    LossWindow,
    Position,
    Progress,
    RunState,
    StopReason,
    TrainSummary,
    tokenizer_digest,
)
from chatbot.training.sampling import mix_inputs, teacher_forcing_ratio
from chatbot.training.schedule import LearningRateSchedule

logger = logging.getLogger(__name__)
SaveState = Callable[[RunState], None]
RecordEntry = Callable[[dict[str, Any]], None]


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when a GPU is present, else the CPU; any other name is taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain fp32. ``auto`` is bf16 on a GPU that
    has it (fp16, with loss scaling, on older ones) and on a CPU that does bf16 natively, else fp32."""
    if precision == "fp32":
        return None
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if precision == "bf16" or torch.cuda.is_bf16_supported() else torch.float16
    native_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return torch.bfloat16 if precision == "bf16" or native_bf16 else None


@dataclass(frozen=True)
class _Fit:
    """What one ``fit`` call validates on and reports to; fixed for the call."""

    valid_batches: Sequence[Batch]  # this rank's share: losses are summed over ranks
    valid_words: int  # words of the validation replies (0: no validation data)
    started: float  # time.monotonic() at which the run, counting the time before any resume, began
    save: SaveState | None
    record: RecordEntry | None


class Trainer:
    """Trains ``model`` on encoded pairs; the caller builds the model and saves the result."""

    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, config: TrainConfig, world: World | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.world = world = world or World()
        self.device = next(model.parameters()).device
        # What forward and backward run through: DDP averages gradients across ranks during backward.
        self.network: nn.Module = DistributedDataParallel(model) if world.distributed else model
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.schedule = LearningRateSchedule(self.optimizer, config.warmup_steps, config.lr_schedule)
        self.dtype = autocast_dtype(config.precision, self.device)
        # fp16 needs loss scaling so small gradients do not underflow; for bf16 and fp32 the scaler is a no-op.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        # The one thing the loop changes besides the weights and optimiser: summary, best weights, patience, loss.
        self.progress = Progress(TrainSummary(), copy.deepcopy(model.state_dict()))

    @property
    def summary(self) -> TrainSummary:
        return self.progress.summary

    def step(self, batch: Batch, teacher_forcing: float = 1.0) -> tuple[float, int]:
        """One optimisation step; returns the mean (label-smoothed) loss per target piece and the piece count.

        ``teacher_forcing`` below 1 feeds that share of decoder inputs from the model's own predictions.
        """
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        source, target_in = batch.source.to(self.device), batch.target_in.to(self.device)
        if teacher_forcing < 1.0:
            with torch.no_grad(), self._autocast():
                predicted = self.model(source, target_in).argmax(dim=-1)  # (batch, tgt_len)
            target_in = mix_inputs(target_in, predicted, teacher_forcing, self.tokenizer.pad_id)
        target = batch.target_out.to(self.device)
        keep = target != self.tokenizer.pad_id  # the output layer runs at real target pieces only
        with self._autocast():
            logits = self.network(source, target_in, keep)  # (pieces, vocab)
        total, pieces = masked_nll(logits, target[keep], self.tokenizer.pad_id, self.config.label_smoothing)
        loss = total / max(pieces, 1)
        self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.after_step()
        return float(loss.detach()), pieces

    def validate(self, batches: Sequence[Batch]) -> float:
        """Mean validation loss per piece (plain NLL, never smoothed) over this rank's ``batches``, summed over
        ranks."""
        total, pieces = self._validation_nll(batches)
        return total / max(pieces, 1)

    def _validation_nll(self, batches: Sequence[Batch]) -> tuple[float, int]:
        with self._autocast():
            total, pieces = batches_nll(self.model, batches, self.tokenizer.pad_id)
        total, pieces_sum = distributed.all_sum([total, pieces], self.world)
        return total, int(pieces_sum)

    def fit(
        self,
        train: Sequence[EncodedPair],
        valid: Sequence[EncodedPair],
        resume: RunState | None = None,
        save: SaveState | None = None,
        record: RecordEntry | None = None,
    ) -> TrainSummary:
        """Train until the epochs, ``max_steps``, the time budget or the patience run out; leaves the best weights
        loaded. ``resume`` is a state an earlier ``save`` received; ``record`` receives each history entry."""
        rng = random.Random(self.config.seed)
        position = self._restore(resume, rng) if resume is not None else Position()
        valid_batches = bucketed_batches(valid, self.config.batch_size, self.tokenizer, rng=None)
        valid_share = valid_batches[self.world.rank :: self.world.size]  # summed over ranks in _validation_nll
        started = time.monotonic() - self.summary.seconds  # a resumed run counts the time it trained before
        fit = _Fit(valid_share, reference_words(self.tokenizer, valid), started, save, record)
        # A resumed run may be over already, or have been given more epochs, steps, time or patience to go on.
        stop = self._limits_reached() if resume is not None else None
        epoch, first = position.epoch, position.batch
        while stop is None and epoch < self.config.epochs:
            epoch_rng = rng.getstate()
            batches = bucketed_batches(train, self.config.batch_size, self.tokenizer, rng, self.config.batch_tokens)
            shard = distributed.shard(batches, self.world)
            self.schedule.set_horizon(self._last_step(len(shard)))
            stop = self._run_epoch(Position(epoch, first, epoch_rng), shard, fit)
            epoch, first = epoch + 1, 0
        self.summary.stopped_by = stop or "epochs"
        self.model.load_state_dict(self.progress.best)
        self._check_ranks_agree()
        return self.summary

    def _run_epoch(self, position: Position, batches: Sequence[Batch], fit: _Fit) -> StopReason | None:
        """Train on this rank's batches of one epoch from ``position.batch``; returns why training must stop, or
        None when the epoch ended and the run goes on."""
        progress_bar = self._progress_bar(position, len(batches))
        for index in progress_bar:
            out_of_time = self._train_step(batches[index], position.epoch + (index + 1) / len(batches), fit.started)
            progress_bar.set_postfix(self._progress_fields(self.summary.tokens_per_second), refresh=False)
            stop = self._stop_reason(out_of_time)
            validate = stop is not None or index + 1 == len(batches) or self._due(self.config.valid_every)
            if validate:
                stop = self._validate(fit) or stop  # always runs at a stop: the last weights count
            if validate or self._due(self.config.checkpoint_every):
                self._save_state(Position(position.epoch, index + 1, position.epoch_rng, stop), fit.save)
            if stop is not None:
                return stop
        return None

    def _train_step(self, batch: Batch, epochs: float, started: float) -> bool:
        """One step, its loss and target pieces summed over ranks into the progress; returns whether any rank ran
        past the time budget (any rank's clock stops them all)."""
        loss, local_pieces = self.step(batch, self._teacher_forcing())
        loss_sum, all_pieces, late = distributed.all_sum(
            [loss * local_pieces, local_pieces, self._out_of_time(started)], self.world
        )
        pieces = int(all_pieces)
        self.progress.window.add(loss_sum, pieces)
        summary = self.summary
        summary.steps, summary.target_tokens = summary.steps + 1, summary.target_tokens + pieces
        summary.epochs, summary.seconds = epochs, time.monotonic() - started
        return late > 0

    def _progress_bar(self, position: Position, total: int) -> tqdm[int]:
        return tqdm(
            range(position.batch, total),
            initial=position.batch,
            total=total,
            desc=f"epoch {position.epoch + 1}/{self.config.epochs}",
            unit="batch",
            disable=None if self.world.is_main else True,
            leave=False,
        )

    def _progress_fields(self, tokens_per_second: float) -> dict[str, str]:
        """The progress bar's postfix: training loss and perplexity since the last validation, the last validation
        word perplexity, and target tokens per second (tqdm adds the ETA for the epoch)."""
        loss = self.progress.window.mean
        fields = {"loss": f"{loss:.3f}", "ppl": f"{math.exp(min(loss, 50.0)):.1f}"}
        last = next((entry for entry in reversed(self.summary.history) if "valid_word_ppl" in entry), None)
        if last is not None:  # looked up from the end: every step asks, and history only grows
            fields["valid_word_ppl"] = f"{last['valid_word_ppl']:.1f}"
        fields["tok/s"] = f"{tokens_per_second:.0f}"
        return fields

    def _validate(self, fit: _Fit) -> StopReason | None:
        """Validate, keep the best weights, adapt the schedule; returns "early_stopping" when patience ran out."""
        valid_loss = self._add_history(fit)
        progress = self.progress
        best = progress.summary.best_valid_loss
        if valid_loss is None or best is None or valid_loss < best:
            progress.summary.best_valid_loss = valid_loss if valid_loss is not None else best
            progress.best, progress.stalled = copy.deepcopy(self.model.state_dict()), 0
        else:
            progress.stalled += 1
        if valid_loss is not None:
            self.schedule.after_validation(valid_loss)
        return "early_stopping" if self._out_of_patience() else None

    def _add_history(self, fit: _Fit) -> float | None:
        """Append a history entry, with the validation loss when there is validation data (which it returns).

        Without validation data every checkpoint counts as the best, so the final weights are kept: training loss
        rewards memorising and is no signal to choose a model by.
        """
        summary = self.summary
        entry: dict[str, Any] = {
            "step": summary.steps,
            "epoch": round(summary.epochs, 3),
            "train_loss": round(self.progress.window.mean, 4),
            "learning_rate": self.schedule.learning_rate,
            "target_tokens_per_second": round(summary.tokens_per_second, 1),
        }
        self.progress.window = LossWindow()
        valid_loss = None
        if fit.valid_words:
            total, pieces = self._validation_nll(fit.valid_batches)
            valid_loss = total / max(pieces, 1)
            entry.update(
                valid_loss=round(valid_loss, 4),
                valid_token_ppl=round(math.exp(min(valid_loss, 50.0)), 2),
                valid_word_ppl=round(math.exp(min(total / fit.valid_words, 50.0)), 2),
            )
        if self.config.scheduled_sampling != "off":
            entry["teacher_forcing"] = round(self._teacher_forcing(), 4)
        summary.history.append(entry)
        if self.world.is_main:
            logger.info("validation: %s" if valid_loss is not None else "progress (no validation data): %s", entry)
            if fit.record is not None:
                fit.record(entry)
        return valid_loss

    def _stop_reason(self, out_of_time: bool) -> StopReason | None:
        """Why the run stops after the step just taken, by the step limit or the clock (patience is checked at
        validations)."""
        if self.config.max_steps and self.summary.steps >= self.config.max_steps:
            return "max_steps"
        return "time_budget" if out_of_time else None

    def _limits_reached(self) -> StopReason | None:
        """Why a restored run is already over under this run's limits, if it is."""
        budget = 60 * self.config.time_budget_minutes
        stop = self._stop_reason(bool(budget) and self.summary.seconds >= budget)
        return "early_stopping" if stop is None and self._out_of_patience() else stop

    def _out_of_patience(self) -> bool:
        return bool(self.config.patience) and self.progress.stalled >= self.config.patience

    def _teacher_forcing(self) -> float:
        """The scheduled-sampling ratio for the step about to run (1.0 when scheduled sampling is off)."""
        config = self.config
        return teacher_forcing_ratio(
            config.scheduled_sampling, self.summary.steps, config.sampling_decay_steps, config.min_teacher_forcing
        )

    def _last_step(self, steps_per_epoch: int) -> int:
        """The step the run ends at if nothing stops it sooner (the cosine schedule's horizon)."""
        planned = self.config.epochs * steps_per_epoch
        return min(planned, self.config.max_steps) if self.config.max_steps else planned

    def _out_of_time(self, started: float) -> float:
        """1.0 when this rank ran past the time budget (a float, to be summed over ranks with the loss)."""
        budget = 60 * self.config.time_budget_minutes
        return float(bool(budget) and time.monotonic() - started >= budget)

    def _due(self, every: int) -> bool:
        return bool(every) and self.summary.steps % every == 0

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def run_state(self, position: Position) -> RunState:
        """Everything needed to continue this run from ``position`` and end with the same weights (the weights and
        optimiser state are the live tensors: save it before training goes on)."""
        cuda = self.device.type == "cuda"
        return RunState(
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            schedule=self.schedule.state_dict(),
            scaler=self.scaler.state_dict(),
            progress=self.progress.snapshot(),
            position=position,
            # Dropout draws from each rank's own torch generator; they are gathered so each rank gets its own back.
            torch_rng=distributed.gather(torch.get_rng_state(), self.world),
            cuda_rng=distributed.gather(torch.cuda.get_rng_state(self.device), self.world) if cuda else None,
            tokenizer_sha256=tokenizer_digest(self.tokenizer),
        )

    def _save_state(self, position: Position, save: SaveState | None) -> None:
        state = self.run_state(position)  # a collective under DDP: every rank builds it, rank 0 hands it on
        if save is not None and self.world.is_main:
            save(state)

    def _restore(self, state: RunState, rng: random.Random) -> Position:
        """Load a saved state into the model, optimiser, schedules, progress and RNGs; returns where to continue."""
        self.model.load_state_dict(state.model)
        self.optimizer.load_state_dict(state.optimizer)
        self.schedule.load_state_dict(state.schedule)
        self.scaler.load_state_dict(state.scaler)
        self.progress = copy.deepcopy(state.progress)  # the caller's state stays as it was saved
        rng.setstate(state.position.epoch_rng)
        rank = self.world.rank if len(state.torch_rng) == self.world.size else 0
        torch.set_rng_state(state.torch_rng[rank])
        if self.device.type == "cuda" and state.cuda_rng is not None:
            torch.cuda.set_rng_state(state.cuda_rng[rank], self.device)
        return state.position

    def _check_ranks_agree(self) -> None:
        """Under DDP every rank must end with the same weights; a difference is a bug, not a user error."""
        if not self.world.distributed:
            return
        checksum = float(sum(parameter.detach().double().sum() for parameter in self.model.parameters()))
        checksums = distributed.gather(checksum, self.world)
        if max(checksums) != min(checksums):
            raise RuntimeError(f"ranks ended with different weights (parameter sums {checksums})")
