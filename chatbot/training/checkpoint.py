"""Checkpoint: the model directory format, and the only code that writes or reads model weights.

A model directory holds ``config.json`` (format version and every config dataclass), ``model.pt`` (the weights),
``tokenizer.model`` (sentencepiece) and ``metrics.json``, plus whatever the trainer attaches (``metrics.jsonl``,
``training_curve.png``). It is written to a temporary sibling directory and renamed
into place, so a crash never leaves a half-written model where a good one is expected.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from chatbot.config import (
    ContextConfig,
    DataConfig,
    DecodeConfig,
    ModelConfig,
    TokenizerConfig,
    TrainConfig,
    from_dict,
)
from chatbot.errors import ModelError
from chatbot.model.seq2seq import Seq2Seq
from chatbot.text.tokenizer import Tokenizer

FORMAT_VERSION = 1
FILES = ("config.json", "model.pt", "tokenizer.model")
HOW_TO_GET_ONE = "train one with `chatbot train chitchat --out DIR` and pass `--model DIR`"


@dataclass(frozen=True)
class ModelBundle:
    """Everything needed to generate replies (the network, its tokenizer, how it reads context and decodes) and to
    evaluate it as it was trained (which pairs its data kept)."""

    model: Seq2Seq
    tokenizer: Tokenizer
    context: ContextConfig
    decode: DecodeConfig
    data: DataConfig


def save(
    directory: Path,
    bundle: ModelBundle,
    train: TrainConfig,
    metrics: dict[str, Any],
    attachments: Mapping[str, bytes] | None = None,
) -> None:
    """Write a model directory atomically, replacing any previous one at ``directory``; ``attachments`` are extra
    files (a training curve, a metrics log) that belong with the model."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        config = {
            "format_version": FORMAT_VERSION,
            "model": asdict(bundle.model.config),
            "tokenizer": asdict(bundle.tokenizer.config),
            "context": asdict(bundle.context),
            "decode": asdict(bundle.decode),
            "data": asdict(bundle.data),
            "train": asdict(train),
        }
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        bundle.tokenizer.save(staging / "tokenizer.model")
        torch.save(bundle.model.state_dict(), staging / "model.pt")
        for name, content in (attachments or {}).items():
            (staging / name).write_bytes(content)
        _replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace(staging: Path, directory: Path) -> None:
    os.chmod(staging, 0o755)  # mkdtemp makes it owner-only; a model directory is ordinary shared data
    if directory.exists():
        retired = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        directory.rename(retired)
        staging.rename(directory)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(directory)


def read_config(directory: Path) -> dict[str, Any]:
    """Read and check ``config.json`` without loading weights (cheap: used to start fast)."""
    if not directory.is_dir():
        raise ModelError(f"no model directory at {directory}; {HOW_TO_GET_ONE}")
    missing = [name for name in FILES if not (directory / name).is_file()]
    if missing:
        raise ModelError(
            f"{directory} is not a complete model directory (missing {', '.join(missing)}); {HOW_TO_GET_ONE}"
        )
    try:
        config: dict[str, Any] = json.loads((directory / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelError(f"{directory / 'config.json'} is unreadable ({error}); {HOW_TO_GET_ONE}") from error
    version = config.get("format_version") if isinstance(config, dict) else None
    if version != FORMAT_VERSION:
        raise ModelError(f"{directory} has model format {version!r}; this chatbot reads format {FORMAT_VERSION}")
    return config


LOAD_ERRORS = (KeyError, TypeError, ValueError, RuntimeError, OSError, EOFError, pickle.UnpicklingError)


def load(directory: Path, device: torch.device | None = None) -> ModelBundle:
    """Load a model directory written by ``save``; any problem is a ModelError that says what to do."""
    config = read_config(directory)
    try:
        model = Seq2Seq(from_dict(ModelConfig, config["model"]))
        state = torch.load(directory / "model.pt", map_location=device or "cpu", weights_only=True)
        mismatch = model.load_state_dict(state, strict=False)
        tokenizer = Tokenizer.load(directory / "tokenizer.model", from_dict(TokenizerConfig, config["tokenizer"]))
    except LOAD_ERRORS as error:
        reason = " ".join(str(error).split())[:200]  # torch's messages span many lines; ours is one
        raise ModelError(f"{directory} is damaged and cannot be loaded ({reason}); {HOW_TO_GET_ONE}") from error
    if mismatch.missing_keys or mismatch.unexpected_keys:
        raise ModelError(
            f"{directory}: the weights do not fit the model in config.json ({len(mismatch.missing_keys)} missing, "
            f"{len(mismatch.unexpected_keys)} unexpected tensors); {HOW_TO_GET_ONE}"
        )
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ModelError(
            f"{directory}: tokenizer has {tokenizer.vocab_size} pieces, model expects {model.config.vocab_size}"
        )
    model.to(device or torch.device("cpu")).eval()
    context = from_dict(ContextConfig, config.get("context", {}))
    decode = from_dict(DecodeConfig, config.get("decode", {}))
    data = from_dict(DataConfig, config["data"]) if "data" in config else DataConfig.unfiltered()
    return ModelBundle(model, tokenizer, context, decode, data)
