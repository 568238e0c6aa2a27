"""Trainer: teacher-forced training of a Seq2Seq with AdamW, gradient clipping, validation, and best-model keeping.

One step: a padded batch runs through the whole network at once (``Seq2Seq.forward``), the masked cross-entropy of
its real target pieces (optionally label-smoothed) is averaged per piece, the gradient is clipped, and AdamW updates
the weights at the rate the schedule sets. With scheduled sampling some decoder inputs are the model's own
predictions (training/sampling.py). Validation runs every ``valid_every`` steps (or each epoch); the weights with
the lowest validation loss are kept, and ``patience`` validations without improvement end the run.

Everything a run depends on (weights, optimiser, schedules, loss scaler, RNG states, the position in the data, the
history) is one ``state`` dict, handed to the ``save`` callback at every validation and every ``checkpoint_every``
steps; ``fit(..., resume=state)`` continues from it exactly. Under torchrun the model is wrapped in DDP, each rank
trains on its shard of every epoch's batches, and the ranks agree on every stop (training/distributed.py).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
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
from chatbot.training.sampling import mix_inputs, teacher_forcing_ratio
from chatbot.training.schedule import LearningRateSchedule

logger = logging.getLogger(__name__)
STATE_FORMAT = 1
Callback = Callable[[dict[str, Any]], None]


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


@dataclass(frozen=True)
class Position:
    """Where a run is in its data: the epoch, the next batch of this rank's share, and the batch-shuffling RNG's
    state at the start of the epoch (so the epoch's batches can be rebuilt). ``stop`` is set once the run ended."""

    epoch: int = 0
    batch: int = 0
    epoch_rng: Any = None
    stop: str = ""


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
        self.summary = TrainSummary()
        self._best_state = copy.deepcopy(model.state_dict())
        self._stalled = 0  # validations since the last improvement
        self._valid_words = 0  # words of the validation replies, counted once per fit
        self._window = [0.0, 0]  # summed training loss and pieces since the last validation
        self._save: Callback | None = None
        self._record: Callback | None = None

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
        resume: dict[str, Any] | None = None,
        save: Callback | None = None,
        record: Callback | None = None,
    ) -> TrainSummary:
        """Train until the epochs, ``max_steps``, the time budget or the patience run out; leaves the best weights
        loaded. ``resume`` is a state an earlier ``save`` received; ``record`` receives each history entry."""
        self._save, self._record = save, record
        rng = random.Random(self.config.seed)
        valid_batches = bucketed_batches(valid, self.config.batch_size, self.tokenizer, rng=None)
        valid_batches = valid_batches[self.world.rank :: self.world.size]  # summed over ranks in _validation_nll
        self._valid_words = reference_words(self.tokenizer, valid)
        position = self._restore(resume, rng) if resume is not None else Position()
        started = time.monotonic() - self.summary.seconds
        stop, first = (self._limits_reached() if resume is not None else ""), position.batch
        for epoch in range(position.epoch, self.config.epochs):
            if stop:
                break
            epoch_rng = rng.getstate()
            batches = bucketed_batches(train, self.config.batch_size, self.tokenizer, rng, self.config.batch_tokens)
            shard = distributed.shard(batches, self.world)
            self.schedule.set_horizon(self._last_step(len(shard)))
            stop = self._run_epoch(Position(epoch, first, epoch_rng), shard, valid_batches, started)
            first = 0
        self.summary.stopped_by = stop or "epochs"
        self.model.load_state_dict(self._best_state)
        self._check_ranks_agree()
        return self.summary

    def _run_epoch(
        self, position: Position, batches: Sequence[Batch], valid_batches: Sequence[Batch], started: float
    ) -> str:
        """Train on this rank's batches of one epoch from ``position.batch``; returns why training must stop, or ""
        to go on."""
        progress = tqdm(
            range(position.batch, len(batches)),
            initial=position.batch,
            total=len(batches),
            desc=f"epoch {position.epoch + 1}/{self.config.epochs}",
            unit="batch",
            disable=None if self.world.is_main else True,
            leave=False,
        )
        summary = self.summary
        for index in progress:
            loss, local_pieces = self.step(batches[index], self._teacher_forcing())
            loss_sum, all_pieces, late = distributed.all_sum(
                [loss * local_pieces, local_pieces, self._out_of_time(started)], self.world
            )
            pieces = int(all_pieces)
            self._window = [self._window[0] + loss_sum, self._window[1] + pieces]
            summary.steps, summary.target_tokens = summary.steps + 1, summary.target_tokens + pieces
            summary.epochs = position.epoch + (index + 1) / len(batches)
            summary.seconds = time.monotonic() - started
            speed = summary.target_tokens / max(summary.seconds, 1e-9)
            progress.set_postfix(self._progress_fields(speed), refresh=False)
            stop = self._stop_reason(late > 0)
            validate = bool(stop) or index + 1 == len(batches) or self._due(self.config.valid_every)
            if validate:
                stop = self._checkpoint(valid_batches) or stop  # always runs at a stop: the last weights count
            if validate or self._due(self.config.checkpoint_every):
                self._save_state(Position(position.epoch, index + 1, position.epoch_rng, stop))
            if stop:
                return stop
        return ""

    def _progress_fields(self, tokens_per_second: float) -> dict[str, str]:
        """The progress bar's postfix: training loss and perplexity since the last validation, the last validation
        word perplexity, and target tokens per second (tqdm adds the ETA for the epoch)."""
        loss = self._window[0] / max(self._window[1], 1)
        fields = {"loss": f"{loss:.3f}", "ppl": f"{math.exp(min(loss, 50.0)):.1f}"}
        last = next((entry for entry in reversed(self.summary.history) if "valid_word_ppl" in entry), None)
        if last is not None:  # looked up from the end: every step asks, and history only grows
            fields["valid_word_ppl"] = f"{last['valid_word_ppl']:.1f}"
        fields["tok/s"] = f"{tokens_per_second:.0f}"
        return fields

    def _checkpoint(self, valid_batches: Sequence[Batch]) -> str:
        """Validate, keep the best weights, adapt the schedule; returns "early_stopping" when patience ran out."""
        valid_loss = self._add_history(valid_batches)
        best = self.summary.best_valid_loss
        improved = valid_loss is None or best is None or valid_loss < best
        if improved:
            self.summary.best_valid_loss = valid_loss if valid_loss is not None else best
            self._best_state, self._stalled = copy.deepcopy(self.model.state_dict()), 0
        else:
            self._stalled += 1
        if valid_loss is not None:
            self.schedule.after_validation(valid_loss)
        return "early_stopping" if self.config.patience and self._stalled >= self.config.patience else ""

    def _add_history(self, valid_batches: Sequence[Batch]) -> float | None:
        """Append a history entry, with the validation loss when there is validation data (which it returns).

        Without validation data every checkpoint counts as the best, so the final weights are kept: training loss
        rewards memorising and is no signal to choose a model by.
        """
        summary = self.summary
        entry: dict[str, Any] = {
            "step": summary.steps,
            "epoch": round(summary.epochs, 3),
            "train_loss": round(self._window[0] / max(self._window[1], 1), 4),
            "learning_rate": self.schedule.learning_rate,
            "target_tokens_per_second": round(summary.target_tokens / max(summary.seconds, 1e-9), 1),
        }
        self._window = [0.0, 0]
        valid_loss = None
        if self._valid_words:
            total, pieces = self._validation_nll(valid_batches)
            valid_loss = total / max(pieces, 1)
            entry.update(
                valid_loss=round(valid_loss, 4),
                valid_token_ppl=round(math.exp(min(valid_loss, 50.0)), 2),
                valid_word_ppl=round(math.exp(min(total / self._valid_words, 50.0)), 2),
            )
        if self.config.scheduled_sampling != "off":
            entry["teacher_forcing"] = round(self._teacher_forcing(), 4)
        summary.history.append(entry)
        if self.world.is_main:
            logger.info("validation: %s" if valid_loss is not None else "progress (no validation data): %s", entry)
            if self._record is not None:
                self._record(entry)
        return valid_loss

    def _stop_reason(self, out_of_time: bool) -> str:
        if self.config.max_steps and self.summary.steps >= self.config.max_steps:
            return "max_steps"
        return "time_budget" if out_of_time else ""

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

    def _limits_reached(self) -> str:
        """Why a restored run is already over under this run's limits ("" if it goes on: a resumed run may have
        been given more epochs, steps, time or patience than the one that saved it)."""
        budget = 60 * self.config.time_budget_minutes
        stop = self._stop_reason(bool(budget) and self.summary.seconds >= budget)
        if not stop and self.config.patience and self._stalled >= self.config.patience:
            stop = "early_stopping"
        return stop

    def _out_of_time(self, started: float) -> float:
        """1.0 when this rank ran past the time budget (summed over ranks: any rank's clock stops them all)."""
        budget = 60 * self.config.time_budget_minutes
        return float(bool(budget) and time.monotonic() - started >= budget)

    def _due(self, every: int) -> bool:
        return bool(every) and self.summary.steps % every == 0

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def state(self, position: Position) -> dict[str, Any]:
        """Everything needed to continue this run from ``position`` and end with the same weights."""
        cuda = self.device.type == "cuda"
        return {
            "format": STATE_FORMAT,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best": self._best_state,
            "stalled": self._stalled,
            "window": list(self._window),
            "summary": asdict(self.summary),
            "position": asdict(position),
            # Dropout draws from each rank's own torch generator; they are gathered so each rank gets its own back.
            "torch_rng": distributed.gather(torch.get_rng_state(), self.world),
            "cuda_rng": distributed.gather(torch.cuda.get_rng_state(self.device), self.world) if cuda else None,
        }

    def _save_state(self, position: Position) -> None:
        state = self.state(position)  # a collective under DDP: every rank builds it, rank 0 hands it on
        if self._save is not None and self.world.is_main:
            self._save(state)

    def _restore(self, state: dict[str, Any], rng: random.Random) -> Position:
        """Load a saved state into the model, optimiser, schedules and RNGs; returns where to continue."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"training state format {state.get('format')!r}, expected {STATE_FORMAT}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self._best_state, self._stalled = state["best"], int(state["stalled"])
        self._window = [float(state["window"][0]), int(state["window"][1])]
        self.summary = TrainSummary(**state["summary"])
        position = Position(**state["position"])
        rng.setstate(_as_tuple(position.epoch_rng))
        rank = self.world.rank if len(state["torch_rng"]) == self.world.size else 0
        torch.set_rng_state(state["torch_rng"][rank])
        if self.device.type == "cuda" and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"][rank], self.device)
        return position

    def _check_ranks_agree(self) -> None:
        """Under DDP every rank must end with the same weights; a difference is a bug, not a user error."""
        if not self.world.distributed:
            return
        checksum = float(sum(parameter.detach().double().sum() for parameter in self.model.parameters()))
        checksums = distributed.gather(checksum, self.world)
        if max(checksums) != min(checksums):
            raise RuntimeError(f"ranks ended with different weights (parameter sums {checksums})")


def _as_tuple(value: Any) -> Any:
    """random.setstate needs tuples; a state that went through a list-making serialiser gets them back."""
    return tuple(_as_tuple(item) for item in value) if isinstance(value, (list, tuple)) else value
