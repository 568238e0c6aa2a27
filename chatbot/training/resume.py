"""Resume: an unfinished run, kept on disk while it trains so that a killed run can continue exactly.

``OUT.partial/`` beside the model directory ``OUT`` holds ``run.json`` (the sources and every setting: a resumed
run must be the same run), ``tokenizer.model``, ``metrics.jsonl`` (the history so far, line by line) and
``state.pt`` (the trainer's state: weights, optimiser, schedules, RNG states, data position, and the SHA-256 of the
tokenizer it was trained with). ``state.pt`` is replaced atomically (write a temporary file, then rename), so a kill
at any moment leaves the previous state whole. The finished model directory is written, then ``OUT.partial`` is
removed. A directory that cannot be continued exactly is a one-line ChatbotError that says to start over.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from chatbot.config import TokenizerConfig
from chatbot.errors import ChatbotError
from chatbot.text.tokenizer import Tokenizer
from chatbot.training.trainer import STATE_FORMAT

STATE, RUN, TOKENIZER = "state.pt", "run.json", "tokenizer.model"
# Settings a resumed run may change: they extend or bound the run, or say where it runs, not what it computes.
MAY_CHANGE = frozenset({"epochs", "max_steps", "time_budget_minutes", "patience", "device", "checkpoint_every"})
# What Trainer.state writes and Trainer._restore reads (trainer.py); save_state adds the tokenizer's SHA-256.
STATE_KEYS = frozenset(
    {
        "format",
        "model",
        "optimizer",
        "schedule",
        "scaler",
        "best",
        "stalled",
        "window",
        "summary",
        "position",
        "torch_rng",
        "cuda_rng",
    }
)
TOKENIZER_SHA256 = "tokenizer_sha256"
T = TypeVar("T")


def partial_dir(out: Path) -> Path:
    """Where the unfinished run that will become ``out`` keeps its state."""
    return out.with_name(out.name + ".partial")


def has_state(directory: Path) -> bool:
    """Whether ``directory`` holds a run that trained far enough to save a state (one worth resuming)."""
    return (directory / STATE).is_file()


def begin(directory: Path, run: dict[str, Any], tokenizer: Tokenizer) -> None:
    """Start a fresh unfinished-run directory (replacing any old one) with the run's settings and tokenizer."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    _write_atomically(directory / TOKENIZER, tokenizer.model_proto)
    _write_atomically(directory / RUN, (json.dumps(run, indent=2) + "\n").encode())


def reopen(directory: Path, run: dict[str, Any], tokenizer_config: TokenizerConfig) -> tuple[Tokenizer, dict[str, Any]]:
    """The tokenizer and trainer state of the unfinished run in ``directory``, after checking that ``run`` (this
    invocation's settings) is the same run."""
    if not has_state(directory):
        raise ChatbotError(f"nothing to resume: {directory / STATE} does not exist (it is written at each validation)")
    saved = _read(directory / RUN, lambda content: json.loads(content.decode("utf-8")))
    tokenizer = _read(directory / TOKENIZER, lambda content: Tokenizer(content, tokenizer_config))
    state = _read(directory / STATE, _load_state)
    if not isinstance(saved, dict):
        raise ChatbotError(f"{directory / RUN} is damaged (not a JSON object); start over with --force")
    _check_state(directory, state, tokenizer)
    changed = sorted(_differences(saved, run))
    if changed:
        raise ChatbotError(
            f"cannot resume {directory}: this run differs in {', '.join(changed)}; "
            "use the original settings, or --force to start over"
        )
    return tokenizer, state


def _read(path: Path, parse: Callable[[bytes], T]) -> T:
    """What ``parse`` makes of the bytes of ``path``, or a ChatbotError saying the file is missing or damaged."""
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ChatbotError(f"cannot resume from {path}: {error.strerror}; start over with --force") from error
    try:
        with warnings.catch_warnings():  # damaged bytes can make torch.load warn (an odd pickle protocol) first
            warnings.simplefilter("ignore")
            return parse(content)
    except Exception as error:  # json, sentencepiece and torch.load raise whatever damaged bytes provoke
        if isinstance(error, RuntimeError) and path.name == TOKENIZER:
            reason = "not a sentencepiece model"  # sentencepiece's message names its own source line
        else:  # torch's first sentence: the rest is advice that does not apply
            reason = " ".join(str(error).split()).split(". ")[0][:160] or "it ends too early"
        raise ChatbotError(f"{path} is damaged ({reason}); start over with --force") from error


def _load_state(content: bytes) -> Any:
    return torch.load(io.BytesIO(content), map_location="cpu", weights_only=True)


def _check_state(directory: Path, state: object, tokenizer: Tokenizer) -> None:
    """Check that ``state`` is a whole trainer state this chatbot can continue, trained with ``tokenizer``."""
    where = f"{directory / STATE}"
    if not isinstance(state, dict):
        raise ChatbotError(f"{where} is damaged (it holds a {type(state).__name__}); start over with --force")
    if state.get("format") != STATE_FORMAT:
        raise ChatbotError(
            f"{where} was saved by another version of chatbot (training state format {state.get('format')!r}, "
            f"this one continues format {STATE_FORMAT}); start over with --force"
        )
    missing = sorted(STATE_KEYS - state.keys())
    if missing:
        raise ChatbotError(f"{where} is damaged (it has no {', '.join(missing)}); start over with --force")
    recorded = state.get(TOKENIZER_SHA256)  # states saved before it was recorded have none
    if recorded is not None and recorded != hashlib.sha256(tokenizer.model_proto).hexdigest():
        raise ChatbotError(
            f"{directory / TOKENIZER} is not the tokenizer {where} was trained with; start over with --force"
        )


def save_state(directory: Path, state: dict[str, Any]) -> None:
    """Replace ``state.pt`` atomically: a kill leaves either the old state or the new one, never a torn file."""
    temporary = directory / f".{STATE}.{os.getpid()}.tmp"
    tokenizer_sha256 = hashlib.sha256((directory / TOKENIZER).read_bytes()).hexdigest()
    torch.save({**state, TOKENIZER_SHA256: tokenizer_sha256}, temporary)
    os.replace(temporary, directory / STATE)


def finish(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def _differences(saved: dict[str, Any], current: dict[str, Any]) -> set[str]:
    """Dotted names of the settings that differ, ignoring those in MAY_CHANGE."""
    names: set[str] = set()
    for section in saved.keys() | current.keys():
        old, new = saved.get(section), current.get(section)
        if isinstance(old, dict) and isinstance(new, dict):
            names |= {
                f"{section}.{key}"
                for key in old.keys() | new.keys()
                if key not in MAY_CHANGE and old.get(key) != new.get(key)
            }
        elif old != new:
            names.add(section)
    return names


def _write_atomically(path: Path, content: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)
