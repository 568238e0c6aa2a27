"""Checkpoint: the model directory format, and the only code that writes or reads a finished model's weights.

A model directory holds ``config.json`` (format version, every config dataclass, and the SHA-256 of the weights and
the tokenizer), ``model.pt`` (the weights, in fp32 or, with ``TrainConfig.weights`` fp16, in half the bytes; they
load as fp32 either way), ``tokenizer.model`` (sentencepiece) and ``metrics.json``, plus whatever
the trainer attaches (``metrics.jsonl``, ``training_curve.png``). It is written to a temporary sibling directory
that then takes the old one's place in one step (on Linux the two are swapped with renameat2), so a crash, even a
SIGKILL, leaves either the whole old model or the whole new one where a model is expected. Loading trusts nothing:
a damaged, mismatched or too new directory is a one-line ModelError naming the file and what is wrong with it
(training/untrusted.py). The weights of an unfinished run travel in its run state (training/run_state.py).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from chatbot.config import (
    ContextConfig,
    DataConfig,
    DecodeConfig,
    ModelConfig,
    TokenizerConfig,
    TrainConfig,
    from_dict,
)
from chatbot.errors import ChatbotError, ModelError, one_line
from chatbot.model.seq2seq import Seq2Seq
from chatbot.text.tokenizer import Tokenizer
from chatbot.training import untrusted
from chatbot.training.config_json import (
    FORMAT_VERSION,
    HOW_TO_GET_ONE,
    REPLY_INDEX,
    read_config,
    unknown_settings,
)

CHECKED_FILES = ("model.pt", "tokenizer.model")  # their SHA-256 is in config.json, checked at load
# Attachments whose SHA-256 is recorded too, and checked at load where the file is present.
CHECKED_ATTACHMENTS = (REPLY_INDEX,)
STORED_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}  # TrainConfig.weights -> model.pt's tensors
AT_FDCWD, RENAME_EXCHANGE = -100, 2  # from <fcntl.h> and <linux/fs.h>

logger = logging.getLogger(__name__)


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
        bundle.tokenizer.save(staging / "tokenizer.model")
        torch.save(stored_weights(bundle.model, train.weights), staging / "model.pt")
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        for name, content in (attachments or {}).items():
            (staging / name).write_bytes(content)
        config = {
            "format_version": FORMAT_VERSION,
            "model": asdict(bundle.model.config),
            "tokenizer": asdict(bundle.tokenizer.config),
            "context": asdict(bundle.context),
            "decode": asdict(bundle.decode),
            "data": asdict(bundle.data),
            "train": asdict(train),
            "sha256": _digests(staging),
        }
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        _replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def round_weights(model: torch.nn.Module, weights: str) -> None:
    """Round ``model``'s floating-point weights, in place, to the values ``weights`` (a TrainConfig.weights) stores,
    so that what is measured before saving is what loading gives back. A weight fp16 cannot hold is an error."""
    dtype = STORED_DTYPES[weights]
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or tensor.dtype == dtype:
                continue
            rounded = tensor.to(dtype)
            if not torch.isfinite(rounded).all() and torch.isfinite(tensor).all():
                raise ChatbotError(f"weight {name} holds values beyond what {weights} stores; save it as fp32")
            tensor.copy_(rounded)


def stored_weights(model: torch.nn.Module, weights: str) -> dict[str, torch.Tensor]:
    """``model``'s state dict as ``model.pt`` stores it: floating-point tensors in ``weights``'s dtype."""
    dtype = STORED_DTYPES[weights]
    return {
        name: tensor.to(dtype) if tensor.is_floating_point() else tensor for name, tensor in model.state_dict().items()
    }


def attach(directory: Path, attachments: Mapping[str, bytes], decode: DecodeConfig | None = None) -> None:
    """Add or replace files in the saved model directory ``directory`` (a reply index built after training),
    recording the SHA-256 of those that are checked at load, and with ``decode`` replace its decoding default; the
    directory is copied, changed and swapped into place atomically, like ``save``. The digests recorded for the
    other files are kept as they are, so a file damaged since it was saved still fails its check."""
    read_config(directory)  # a damaged config.json is not silently extended
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        shutil.copytree(directory, staging, dirs_exist_ok=True)
        for name, content in attachments.items():
            (staging / name).write_bytes(content)
        config = json.loads((staging / "config.json").read_text())
        added = {name: _sha256(content) for name, content in attachments.items() if name in CHECKED_ATTACHMENTS}
        config["sha256"] = {**config.get("sha256", {}), **added}
        if decode is not None:
            config["decode"] = asdict(decode)
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        _replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _digests(directory: Path) -> dict[str, str]:
    """The SHA-256 of the checked files, and of the checked attachments the directory has."""
    present = [name for name in CHECKED_ATTACHMENTS if (directory / name).is_file()]
    return {name: _sha256((directory / name).read_bytes()) for name in (*CHECKED_FILES, *present)}


def _replace(staging: Path, directory: Path) -> None:
    """Put ``staging`` where ``directory`` is, swapping the two in one step where the system can."""
    os.chmod(staging, 0o755)  # mkdtemp makes it owner-only; a model directory is ordinary shared data
    if not directory.exists():
        staging.rename(directory)
    elif _exchange(staging, directory):
        shutil.rmtree(staging, ignore_errors=True)  # it holds the old model now
    else:  # a crash between these two renames leaves the old model whole, but at .NAME.old-PID
        retired = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        directory.rename(retired)
        staging.rename(directory)
        shutil.rmtree(retired, ignore_errors=True)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux's renameat2); False where the system or the filesystem cannot."""
    if sys.platform != "linux":
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:  # a C library older than glibc 2.28
        return False
    if renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a kernel or filesystem without RENAME_EXCHANGE
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def load(directory: Path, device: torch.device | None = None) -> ModelBundle:
    """Load a model directory written by ``save``; any problem is a ModelError that says what is wrong."""
    config = read_config(directory)
    unknown = unknown_settings(config)
    if unknown:  # ignored, but not silently; one that changes the network fails the weights check below
        logger.warning(
            "%s: ignoring settings this chatbot does not know: %s", directory / "config.json", ", ".join(unknown)
        )
    model_config = from_dict(ModelConfig, config["model"])
    weights, state = _read_weights(directory / "model.pt")
    _check_fit(directory, model_config, state)
    tokenizer = _read_tokenizer(directory / "tokenizer.model", from_dict(TokenizerConfig, config["tokenizer"]))
    if tokenizer.vocab_size != model_config.vocab_size:
        raise ModelError(
            f"{directory / 'tokenizer.model'} has {tokenizer.vocab_size} pieces but the weights were trained with "
            f"{model_config.vocab_size}: it belongs to another model; {HOW_TO_GET_ONE}"
        )
    contents = {"model.pt": weights, "tokenizer.model": tokenizer.model_proto}
    contents.update(
        {name: (directory / name).read_bytes() for name in CHECKED_ATTACHMENTS if (directory / name).exists()}
    )
    _check_digests(directory, config.get("sha256"), contents)
    model = Seq2Seq(model_config)
    model.load_state_dict(state)
    model.to(device or torch.device("cpu")).eval()
    context = from_dict(ContextConfig, config.get("context", {}))
    decode = from_dict(DecodeConfig, config.get("decode", {}))
    data = from_dict(DataConfig, config["data"]) if "data" in config else DataConfig.unfiltered()
    return ModelBundle(model, tokenizer, context, decode, data)


def _read_weights(path: Path) -> tuple[bytes, dict[str, torch.Tensor]]:
    """The bytes of ``model.pt`` and the named tensors they hold."""
    try:
        weights = path.read_bytes()
    except OSError as error:
        raise ModelError(f"{path} cannot be read ({error.strerror})") from error
    try:
        state = untrusted.load_torch(weights)
    except Exception as error:  # torch's zip reader and unpickler raise whatever damaged bytes provoke (struct.error)
        raise ModelError(f"{path} is damaged or truncated ({untrusted.reason(error)}); {HOW_TO_GET_ONE}") from error
    if not isinstance(state, dict) or not all(
        isinstance(name, str) and isinstance(tensor, torch.Tensor) for name, tensor in state.items()
    ):
        raise ModelError(f"{path} is damaged: it holds a {type(state).__name__}, not named tensors; {HOW_TO_GET_ONE}")
    return weights, state


def _check_fit(directory: Path, config: ModelConfig, state: dict[str, torch.Tensor]) -> None:
    """Check that the weights are the tensors, of the shapes, of the network config.json describes."""
    layers = max(config.encoder_layers, config.decoder_layers)
    if layers > len(state):  # every layer has weights; and building a million layers, even without memory, hangs
        raise ModelError(
            f"{directory} is damaged: the weights in model.pt do not fit config.json ({layers} layers, but "
            f"{len(state)} tensors); {HOW_TO_GET_ONE}"
        )
    try:
        with torch.device("meta"), _ShapesOnly():  # no memory: a damaged config.json may describe a huge network
            expected = {name: tuple(tensor.shape) for name, tensor in Seq2Seq(config).state_dict().items()}
    except Exception as error:  # torch rejects impossible sizes with assorted errors (IndexError, AssertionError)
        reason = one_line(error)[:120]
        raise ModelError(f"{directory / 'config.json'} describes a network that cannot be built ({reason})") from error
    found = {name: tuple(tensor.shape) for name, tensor in state.items()}
    problems = [f"no {name}" for name in sorted(expected.keys() - found.keys())]
    problems += [f"unexpected {name}" for name in sorted(found.keys() - expected.keys())]
    problems += [
        f"{name} is {list(found[name])} in model.pt but {list(shape)} by config.json"
        for name, shape in sorted(expected.items())
        if name in found and found[name] != shape
    ]
    if problems:
        more = f", and {len(problems) - 1} more" if len(problems) > 1 else ""
        raise ModelError(
            f"{directory} is damaged: the weights in model.pt do not fit config.json ({problems[0]}{more}); "
            f"{HOW_TO_GET_ONE}"
        )


class _ShapesOnly(TorchFunctionMode):
    """Build modules without drawing their initial values (torch.nn.init), which a shape check does not need.

    On the meta device ``normal_`` is a Python reference implementation whose first call imports torch._dynamo:
    about one second of every start of ``chatbot chat``, spent before the prompt for nothing."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return kwargs["tensor"] if "tensor" in kwargs else args[0]  # left as it is: a meta tensor has no values
        return func(*args, **kwargs)


def _read_tokenizer(path: Path, config: TokenizerConfig) -> Tokenizer:
    try:
        return Tokenizer.load(path, config)
    except (OSError, RuntimeError, ValueError) as error:
        # sentencepiece's RuntimeError names its own source line, not the problem
        reason = "not a sentencepiece model" if isinstance(error, RuntimeError) else one_line(error)[:160]
        raise ModelError(f"{path} is not a usable tokenizer ({reason}); {HOW_TO_GET_ONE}") from error


def _check_digests(directory: Path, recorded: object, contents: Mapping[str, bytes]) -> None:
    """Check files against the SHA-256 config.json recorded when they were saved (models saved before have none)."""
    if recorded is None:
        return
    if not isinstance(recorded, dict):
        raise ModelError(f"{directory / 'config.json'}: sha256 should be an object; {HOW_TO_GET_ONE}")
    for name, content in contents.items():
        if name in recorded and recorded[name] != _sha256(content):
            raise ModelError(
                f"{directory / name} is not the file saved with this model (its SHA-256 differs from the one in "
                f"config.json): it was damaged or replaced; {HOW_TO_GET_ONE}"
            )


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()
