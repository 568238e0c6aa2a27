"""Options shared by several commands, each with its help text beside the setting it sets.

Options that fill a config dataclass field take their default from the dataclass, so a default lives in one place;
the decoding flags are made from DecodeConfig's fields, help text included (config.py), so a new decoding setting
needs no edit here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from chatbot.config import (
    ATTENTION_SCORES,
    CANDIDATE_SOURCES,
    CELLS,
    DECODE_STRATEGIES,
    LR_SCHEDULES,
    PRECISIONS,
    SAMPLING_SCHEDULES,
    WEIGHT_FORMATS,
    ContextConfig,
    DataConfig,
    DecodeConfig,
    ModelShape,
    TokenizerConfig,
    TrainConfig,
)

FC = TypeVar("FC", bound=Callable[..., Any])


def apply_all(options: Sequence[Callable[[Any], Any]]) -> Callable[[FC], FC]:
    """One decorator that applies ``options`` so that --help lists them in the order given."""

    def decorate(function: FC) -> FC:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def model_option(help_text: str = "Model directory written by `chatbot train`.") -> Callable[[FC], FC]:
    return click.option(
        "--model",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="CHATBOT_MODEL",
        show_envvar=True,
        default=None,
        help=f"{help_text} Default: the model shipped in data/default-model.",
    )


def db_option() -> Callable[[FC], FC]:
    return click.option(
        "--db",
        envvar="CHATBOT_DB",
        show_envvar=True,
        default=None,
        help="SQLAlchemy database URL (sqlite:///path.db, postgresql://user:pass@host/db). "
        "Default: a SQLite file in the user data directory.",
    )


def threads_option(note: str = "") -> Callable[[FC], FC]:
    """``--threads``; ``note`` adds what a command does with them."""
    return click.option(
        "--threads",
        type=click.IntRange(min=0),
        default=0,
        envvar="CHATBOT_THREADS",
        show_envvar=True,
        help="CPU threads for PyTorch; 0 leaves PyTorch's default (one per core)." + note,
    )


def session_timeout_option() -> Callable[[FC], FC]:
    return click.option(
        "--session-timeout",
        default="60m",
        metavar="DURATION",
        help="A conversation idle this long ends; the next message starts a new one (30m, 12h, 1d; 0: never).",
    )


def persona_option() -> Callable[[FC], FC]:
    return click.option(
        "--persona",
        metavar="FILE|none",
        envvar="CHATBOT_PERSONA",
        show_envvar=True,
        default=None,
        help="The bot's answers about itself (its name, that it is a bot, ...), used instead of the model's when "
        "a message matches one (chatbot/dialogue/persona.py). Default: the model directory's persona.yaml if it "
        "has one; none: answer everything with the model.",
    )


def quantize_option(default: bool) -> Callable[[FC], FC]:
    """int8 inference: on by default where replies are served (chat, telegram), off where a model is measured."""
    return click.option(
        "--quantize/--no-quantize",
        default=default,
        help="Run the model with int8 weights (dynamic quantization of the RNN and linear layers): about 1.8x "
        "faster replies on a CPU, perplexity within half a percent of fp32.",
    )


def decode_options(stored: bool = False) -> Callable[[FC], FC]:
    """A flag for every DecodeConfig field. Unset flags keep what the model directory stores (its decode section),
    so a flag, its environment variable or the config file changes only what it names. ``stored``: the flags
    set the decoding a new model stores instead (``chatbot train``)."""
    kinds: dict[type, click.ParamType[Any]] = {int: click.IntRange(min=0), float: click.FloatRange(min=0)}
    kinds[bool] = click.BOOL
    choices = {"strategy": click.Choice(DECODE_STRATEGIES), "candidates": click.Choice(CANDIDATE_SOURCES)}

    def default(value: object) -> str:
        if stored:
            return f"[default: {value!r}; stored in the model as its decoding default]"
        return f"[default: the model's setting; {value!r} unless it saved another]"

    return apply_all(
        [
            click.option(
                f"--{f.name.replace('_', '-')}",
                f.name,
                type=choices.get(f.name) or kinds[type(f.default)],
                default=None,
                help=f"{f.metadata['help']}  {default(f.default)}",
            )
            for f in dataclasses.fields(DecodeConfig)
        ]
    )


def field_default(cls: type, name: str) -> Any:
    return {f.name: f.default for f in dataclasses.fields(cls)}[name]


def field_option(cls: type, name: str, kind: click.ParamType[Any], help_text: str | None = None) -> Callable[[FC], FC]:
    """``--field-name`` for a config dataclass field: its default comes from the dataclass, so it lives in one place."""
    return click.option(
        f"--{name.replace('_', '-')}", name, type=kind, default=field_default(cls, name), help=help_text
    )


def field_flag(cls: type, name: str, off: str, help_text: str) -> Callable[[FC], FC]:
    """``--field-name/--OFF`` for a boolean config dataclass field, its default from the dataclass."""
    flag = name.replace("_", "-")
    return click.option(f"--{flag}/--{off}", name, default=field_default(cls, name), help=help_text)


POSITIVE, COUNT = click.IntRange(min=1), click.IntRange(min=0)
# ``chatbot train``'s settings: the TrainConfig, TokenizerConfig, ModelShape, ContextConfig and DataConfig fields
# it exposes, each with its type and help. The command builds the dataclasses from the values (cli/train.py).
TRAINING_OPTIONS = [
    field_option(TrainConfig, "epochs", POSITIVE),
    field_option(TrainConfig, "batch_size", POSITIVE, "Most pairs in a batch."),
    field_option(
        TrainConfig,
        "batch_tokens",
        COUNT,
        "Also cap each batch's padded source+target pieces (0: no cap), so long pairs get smaller batches.",
    ),
    field_option(TrainConfig, "learning_rate", click.FloatRange(min=0, min_open=True)),
    field_option(TrainConfig, "clip_norm", click.FloatRange(min=0, min_open=True), "Clip the gradient norm to this."),
    field_option(TrainConfig, "max_steps", COUNT, "Stop after this many steps (0: no limit)."),
    click.option(
        "--time-budget",
        type=click.FloatRange(min=0),
        default=field_default(TrainConfig, "time_budget_minutes"),
        help="Stop after this many minutes (0: no limit).",
    ),
    field_option(TrainConfig, "valid_every", COUNT, "Validate every N steps (0: each epoch)."),
    field_option(
        TrainConfig,
        "precision",
        click.Choice(PRECISIONS),
        "auto: bf16 autocast where the hardware does bf16 natively (fp16 with loss scaling on older GPUs), else fp32.",
    ),
    field_option(
        TrainConfig,
        "weights",
        click.Choice(WEIGHT_FORMATS),
        "How model.pt stores the weights: fp16 halves the file (they load as fp32; the held-out metrics and the "
        "reply index are computed on the rounded weights).",
    ),
    field_option(
        TrainConfig,
        "scheduled_sampling",
        click.Choice(SAMPLING_SCHEDULES),
        "Feed the decoder some of its own predictions, more as training goes on (linear or inverse_sigmoid decay "
        "of the teacher-forcing ratio).",
    ),
    field_option(
        TrainConfig,
        "sampling_decay_steps",
        POSITIVE,
        "Steps over which the teacher-forcing ratio decays (inverse_sigmoid is halfway at half of them).",
    ),
    field_option(
        TrainConfig, "min_teacher_forcing", click.FloatRange(0, 1), "The teacher-forcing ratio never falls below this."
    ),
    field_option(
        TrainConfig, "checkpoint_every", COUNT, "Also save the resumable state every N steps (0: at validations only)."
    ),
    field_option(
        TrainConfig,
        "label_smoothing",
        click.FloatRange(0, 1, max_open=True),
        "Spread this much of the target probability over the vocabulary (training loss only).",
    ),
    field_option(TrainConfig, "weight_decay", click.FloatRange(min=0), "AdamW weight decay."),
    field_option(TrainConfig, "warmup_steps", COUNT, "Raise the learning rate linearly over this many steps."),
    field_option(
        TrainConfig,
        "lr_schedule",
        click.Choice(LR_SCHEDULES),
        "After warmup: constant; plateau (halve the rate whenever validation does not improve); inverse_sqrt "
        "decay; or cosine decay to 0 at the last step (--max-steps, or the epochs).",
    ),
    field_option(
        TrainConfig, "patience", COUNT, "Stop after this many validations without improvement (0: never stop early)."
    ),
    field_option(TrainConfig, "device", click.STRING, "auto (CUDA if present, else CPU), cpu, cuda, cuda:1..."),
    field_option(TrainConfig, "seed", click.INT),
    field_option(TokenizerConfig, "vocab_size", click.IntRange(min=50)),
    field_option(ModelShape, "embedding_size", POSITIVE),
    field_option(ModelShape, "hidden_size", POSITIVE),
    field_option(ModelShape, "encoder_layers", POSITIVE),
    field_option(ModelShape, "decoder_layers", POSITIVE),
    field_option(ModelShape, "dropout", click.FloatRange(0, 1, max_open=True)),
    field_option(
        ModelShape,
        "attention",
        click.Choice(ATTENTION_SCORES),
        "Luong's dot, general or concat (attention after the decoder step: whole-reply teacher forcing), or "
        "Bahdanau's additive (before the step; teacher forcing loops over positions).",
    ),
    field_option(ModelShape, "cell", click.Choice(CELLS), "Recurrent cell of encoder and decoder."),
    field_flag(ModelShape, "bidirectional", "unidirectional", "Read the context in both directions."),
    field_flag(
        ModelShape, "tie_embeddings", "no-tie-embeddings", "Decoder output projection reuses its input embedding."
    ),
    field_flag(ModelShape, "share_embeddings", "no-share-embeddings", "Encoder and decoder share one embedding."),
    field_option(ContextConfig, "history_turns", POSITIVE, "Turns of context the model sees."),
    field_option(ContextConfig, "max_source_tokens", POSITIVE, "Context pieces kept (the latest)."),
    field_option(ContextConfig, "max_target_tokens", click.IntRange(min=2), "Reply pieces kept, end included."),
    field_flag(
        DataConfig,
        "dedupe",
        "keep-duplicates",
        "Drop exact duplicate pairs, and held-out pairs that also occur in train.",
    ),
    field_option(DataConfig, "min_reply_words", COUNT, "Drop pairs whose reply has fewer words."),
    field_option(DataConfig, "max_reply_words", COUNT, "Drop pairs whose reply has more words (0: no limit)."),
    field_option(
        DataConfig,
        "short_context_share",
        click.FloatRange(0, 1),
        "Also train on this share of the pairs with two or more turns of context, cut to their last turn, so the "
        "model does not answer every first message with a greeting (0: off).",
    ),
]
