"""Run state: everything a training run needs to continue exactly, and its file ``state.pt``, whose keys only this
module knows.

A ``RunState`` holds the weights, the optimiser, schedule and loss-scaler states, the run's ``Progress`` (its
summary and history, the best weights so far, validations without improvement, the training loss since the last
validation), its ``Position`` in the data, every rank's RNG states, and the SHA-256 of the tokenizer it trains
with. On disk it is a plain dict of tensors and containers (``STATE_FORMAT`` 1), so ``torch.load(weights_only=True)``
reads it without running code. ``save`` replaces the file atomically; ``load`` reads and checks it, and anything
wrong is a one-line ChatbotError that names the file and says to start over.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch

from chatbot.errors import ChatbotError, one_line
from chatbot.text.tokenizer import Tokenizer
from chatbot.training.untrusted import load_torch, reason

STATE_FORMAT = 1
START_OVER = "start over with --force"
# Why a run stopped, as metrics.json records it: "epochs" is the end of the planned run.
StopReason = Literal["epochs", "max_steps", "time_budget", "early_stopping"]
T = TypeVar("T")


@dataclass
class TrainSummary:
    """What happened during training, written to the model directory's metrics."""

    steps: int = 0
    epochs: float = 0.0
    seconds: float = 0.0
    target_tokens: int = 0
    best_valid_loss: float | None = None
    stopped_by: StopReason = "epochs"
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.target_tokens / max(self.seconds, 1e-9)


@dataclass
class LossWindow:
    """The training loss summed over the target pieces trained since the last validation, and those pieces."""

    loss_sum: float = 0.0
    pieces: int = 0

    def add(self, loss_sum: float, pieces: int) -> None:
        self.loss_sum, self.pieces = self.loss_sum + loss_sum, self.pieces + pieces

    @property
    def mean(self) -> float:
        return self.loss_sum / max(self.pieces, 1)


@dataclass
class Progress:
    """How far a run got and how well: the part of its state that the training loop changes."""

    summary: TrainSummary
    best: dict[str, torch.Tensor]  # the weights with the lowest validation loss so far
    stalled: int = 0  # validations since the last improvement
    window: LossWindow = field(default_factory=LossWindow)

    def snapshot(self) -> Progress:
        """A copy that later training leaves alone (the best weights are shared: they are replaced, never changed)."""
        return Progress(copy.deepcopy(self.summary), self.best, self.stalled, dataclasses.replace(self.window))


@dataclass(frozen=True)
class Position:
    """Where a run is in its data: the epoch, the next batch of this rank's share, and the batch-shuffling RNG's
    state at the start of the epoch (so the epoch's batches can be rebuilt). ``stop`` is set once the run ended."""

    epoch: int = 0
    batch: int = 0
    epoch_rng: Any = None
    stop: StopReason | None = None


@dataclass
class RunState:
    """Everything needed to continue a run from ``position`` and end with the weights an uninterrupted run ends
    with. The weights and optimiser state are the trainer's live tensors: save the state before training goes on."""

    model: dict[str, Any]
    optimizer: dict[str, Any]
    schedule: dict[str, Any]
    scaler: dict[str, Any]
    progress: Progress
    position: Position
    torch_rng: list[torch.Tensor]  # one per rank: dropout draws from each rank's own generator
    cuda_rng: list[torch.Tensor] | None  # None for a run on the CPU
    tokenizer_sha256: str | None = None  # None in states saved before it was recorded

    def trained_with(self, tokenizer: Tokenizer) -> bool:
        """Whether this run trains with ``tokenizer`` (taken as yes where the state does not say)."""
        return self.tokenizer_sha256 is None or self.tokenizer_sha256 == tokenizer_digest(tokenizer)

    def to_dict(self) -> dict[str, Any]:
        """The state as ``state.pt`` holds it: format 1, plain containers and tensors."""
        progress, position = self.progress, self.position
        return {
            "format": STATE_FORMAT,
            "model": self.model,
            "optimizer": self.optimizer,
            "schedule": self.schedule,
            "scaler": self.scaler,
            "best": progress.best,
            "stalled": progress.stalled,
            "window": [progress.window.loss_sum, progress.window.pieces],
            "summary": asdict(progress.summary),
            "position": {**asdict(position), "stop": position.stop or ""},
            "torch_rng": self.torch_rng,
            "cuda_rng": self.cuda_rng,
            "tokenizer_sha256": self.tokenizer_sha256,
        }

    @classmethod
    def from_dict(cls, state: object, where: str) -> RunState:
        """The run state in ``state``, a dict ``to_dict`` made (now or by any chatbot of the same format); a
        one-line ChatbotError naming ``where`` if it is not one."""
        if not isinstance(state, dict):
            raise ChatbotError(f"{where} is damaged (it holds a {type(state).__name__}); {START_OVER}")
        if state.get("format") != STATE_FORMAT:
            raise ChatbotError(
                f"{where} was saved by another version of chatbot (training state format {state.get('format')!r}, "
                f"this one continues format {STATE_FORMAT}); {START_OVER}"
            )
        try:
            return cls._from_format_1(state)
        except KeyError as error:
            raise ChatbotError(f"{where} is damaged (it has no {error.args[0]}); {START_OVER}") from error
        except (TypeError, ValueError, IndexError) as error:  # a value of the wrong kind or size
            raise ChatbotError(f"{where} is damaged ({one_line(error)[:160]}); {START_OVER}") from error

    @classmethod
    def _from_format_1(cls, state: dict[str, Any]) -> RunState:
        window, position = state["window"], state["position"]
        stop = position.get("stop")  # "" while the run goes on
        progress = Progress(
            TrainSummary(**state["summary"]),
            state["best"],
            int(state["stalled"]),
            LossWindow(float(window[0]), int(window[1])),
        )
        return cls(
            model=state["model"],
            optimizer=state["optimizer"],
            schedule=state["schedule"],
            scaler=state["scaler"],
            progress=progress,
            position=Position(**{**position, "epoch_rng": _as_tuple(position["epoch_rng"]), "stop": stop or None}),
            torch_rng=state["torch_rng"],
            cuda_rng=state["cuda_rng"],
            tokenizer_sha256=state.get("tokenizer_sha256"),
        )


def tokenizer_digest(tokenizer: Tokenizer) -> str:
    return hashlib.sha256(tokenizer.model_proto).hexdigest()


def save(path: Path, state: RunState) -> None:
    """Replace ``path`` atomically: a kill leaves either the old state or the new one, never a torn file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state.to_dict(), temporary)
    os.replace(temporary, path)


def load(path: Path) -> RunState:
    """The run state ``save`` wrote to ``path``, checked; a one-line ChatbotError if it cannot be continued."""
    return RunState.from_dict(read(path, load_torch), str(path))


def read(path: Path, parse: Callable[[bytes], T]) -> T:
    """What ``parse`` makes of the bytes of ``path``, a file of an unfinished run, or a ChatbotError saying the file
    is missing or damaged and the run must start over."""
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ChatbotError(f"cannot resume from {path}: {error.strerror}; {START_OVER}") from error
    try:
        return parse(content)
    except Exception as error:  # json, sentencepiece and torch.load raise whatever damaged bytes provoke
        raise ChatbotError(f"{path} is damaged ({reason(error)}); {START_OVER}") from error


def _as_tuple(value: Any) -> Any:
    """random.setstate needs tuples; a state that went through a list-making serialiser gets them back."""
    return tuple(_as_tuple(item) for item in value) if isinstance(value, (list, tuple)) else value
