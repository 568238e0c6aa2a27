"""``chatbot train`` (dialogue logs to a model directory) and ``chatbot index`` (a reply index for a trained
model). The work is in training/pipeline.py; these commands turn flags into config dataclasses."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from chatbot.cli.options import TRAINING_OPTIONS, apply_all, decode_options, model_option, threads_option
from chatbot.cli.wiring import decode_config, default_model_dir, report, set_threads
from chatbot.config import ContextConfig, DataConfig, DecodeConfig, ModelShape, TokenizerConfig, TrainConfig
from chatbot.errors import ChatbotError

if TYPE_CHECKING:  # the pipeline imports torch: loaded only when a command runs
    from chatbot.training.pipeline import WarmStart


@click.command()
@click.argument("data", nargs=-1)
@click.option(
    "--from-db",
    "from_db",
    metavar="URL",
    help="Also train on the conversations stored in this database (the bot's own logs).",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Model directory to write."
)
@click.option(
    "--force", is_flag=True, help="Replace --out if it already holds a model, and discard an unfinished run there."
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the unfinished run for --out from OUT.partial/ (saved at every validation and every "
    "--checkpoint-every steps), with the same data and settings; it ends with the weights an uninterrupted run "
    "would have. --epochs, --max-steps, --time-budget, --patience, --device and --weights may change.",
)
@click.option(
    "--tensorboard",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also log every validation's metrics to this TensorBoard directory (needs chatbot[tensorboard]).",
)
@click.option(
    "--reply-index/--no-reply-index",
    default=None,
    help="Also write a reply index of the training pairs into the model (for --candidates retrieved|both). "
    "Retrieved replies repeat training text word for word, so it is off for your own logs unless asked for, and "
    "on by default when every DATA is a built-in public corpus (chitchat, chatterbot:...).",
)
@click.option(
    "--init-from",
    "init_from",
    type=click.Path(file_okay=False, path_type=Path),
    help="Start from this trained model's weights and tokenizer instead of random ones (fine-tuning, for instance "
    "data/default-model on your own logs). The new model keeps its shape, vocabulary and context turns, so those "
    "flags may only repeat its values; decoding flags are this command's, as for any run.",
)
@apply_all(TRAINING_OPTIONS)
@threads_option()
@decode_options(stored=True)
def train(
    data: tuple[str, ...],
    from_db: str | None,
    out: Path,
    force: bool,
    resume: bool,
    tensorboard: Path | None,
    reply_index: bool | None,
    init_from: Path | None,
    **options: Any,
) -> None:
    """Train a model on dialogue logs and write a self-contained model directory to --out.

    Each DATA is a file or a corpus: .jsonl conversations (one JSON object per line: {"id": ..., "turns":
    [{"speaker": ..., "text": ...}, ...]}), .csv/.tsv (context, response) pairs, chatterbot .yml dialogues, a
    Telegram Desktop export (result.json), a database URL, or a built-in corpus: chitchat (BYU Chit-Chat) or
    chatterbot:english (chatterbot:LANGUAGE[/TOPIC]). Conversations are split into train/valid/test by a hash of
    their id; the directory holds weights, tokenizer, config and metrics. A malformed file stops training before
    it starts, naming the file and line. The decoding flags (--strategy, --top-p...) set how the model decodes
    unless a chat or bot is told otherwise.

    While it trains, the run's state is saved in OUT.partial/ at every validation and every --checkpoint-every
    steps; if the run is killed, the same command with --resume continues it to the same final weights.

    Scale out with torchrun: `torchrun --nproc-per-node N $(which chatbot) train ...` runs one DDP process per
    CPU share or GPU; each trains on its share of every epoch's batches, and rank 0 writes the model.
    """
    from chatbot.corpora import is_public_corpus
    from chatbot.training.distributed import World, leave
    from chatbot.training.pipeline import RunOptions, WarmStart, train_model_dir

    sources = (*data, from_db) if from_db else data
    _check_arguments(sources, out, force, resume)
    set_threads(options.pop("threads"))
    shape, tokenizer, context, data_config, decode, config = _configs(options)
    start = WarmStart.load(init_from) if init_from is not None else None
    if start is not None:
        shape, tokenizer, context = _warm_configs(start, shape, tokenizer, context)
    index = all(is_public_corpus(source) for source in sources) if reply_index is None else reply_index
    if decode.candidates != "generated" and not index:  # the model could not answer as its decoding says
        raise click.UsageError(f"--candidates {decode.candidates} needs the reply index: add --reply-index")
    world = World.from_environment(os.environ)
    run = RunOptions(resume=resume, restart=force, tensorboard=tensorboard, world=world)
    try:
        metrics = train_model_dir(
            sources, out, shape, tokenizer, context, data_config, config, report, run, decode, index, start
        )
    finally:
        leave(world)
    if world.is_main:
        summary = {key: metrics[key] for key in ("valid", "test") if key in metrics}
        click.echo(json.dumps({"model": str(out), **summary}, indent=2))


def _check_arguments(sources: tuple[str, ...], out: Path, force: bool, resume: bool) -> None:
    """Refuse, before any work, a run with no data, or one that would overwrite --out by surprise."""
    if not sources:
        raise click.UsageError("name at least one DATA source or --from-db URL")
    if resume and force:
        raise click.UsageError("--resume continues the unfinished run and --force discards it: pass one of them")
    if out.exists() and any(out.iterdir()) and not (force or resume):
        raise ChatbotError(f"{out} already exists and is not empty; pass --force to replace it")


def _configs(
    options: dict[str, Any],
) -> tuple[ModelShape, TokenizerConfig, ContextConfig, DataConfig, DecodeConfig, TrainConfig]:
    """The config dataclasses ``train``'s flags fill; each takes its own fields, TrainConfig the rest."""

    def take(cls: type[Any]) -> dict[str, Any]:
        return {f.name: options.pop(f.name) for f in dataclasses.fields(cls) if f.name in options}

    shape, context, data = ModelShape(**take(ModelShape)), ContextConfig(**take(ContextConfig)), take(DataConfig)
    tokenizer = TokenizerConfig(vocab_size=options.pop("vocab_size"), seed=options["seed"])
    decode = DecodeConfig(**{name: value for name, value in take(DecodeConfig).items() if value is not None})
    options["time_budget_minutes"] = options.pop("time_budget")
    return shape, tokenizer, context, DataConfig(**data), decode, TrainConfig(**options)


def _warm_configs(
    start: WarmStart, shape: ModelShape, tokenizer: TokenizerConfig, context: ContextConfig
) -> tuple[ModelShape, TokenizerConfig, ContextConfig]:
    """The shape, tokenizer and context of the model a run starts from (its dropout may change); a flag given
    with another value than that model's is a usage error, not silently ignored."""
    kept_shape = dataclasses.replace(start.shape, dropout=shape.dropout)
    kept_context = start.bundle.context
    source = click.get_current_context().get_parameter_source
    pairs = [(shape, kept_shape), (context, kept_context)]
    wanted = [(name, getattr(new, name), getattr(old, name)) for new, old in pairs for name in _names(new)]
    wanted.append(("vocab_size", tokenizer.vocab_size, start.tokenizer_config.vocab_size))
    for name, value, kept in wanted:
        if value != kept and source(name) not in (None, ParameterSource.DEFAULT):
            flag = "--" + name.replace("_", "-")
            raise click.UsageError(f"{flag} {value} differs from --init-from {start.source['model']}, which has {kept}")
    return kept_shape, start.tokenizer_config, kept_context


def _names(config: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(config)]


@click.command("index")
@model_option()
@click.argument("data", nargs=-1, required=True)
@decode_options()
def index(model: Path | None, data: tuple[str, ...], **decode: Any) -> None:
    """Add a reply index to a trained model: the training side of DATA, split and cleaned as the model's own data.

    The index lets the model choose its reply among training replies as well as its own (--candidates retrieved
    or both). Give the DATA the model was trained on (the same sources as `chatbot train`); retrieved replies
    repeat that text word for word, so index only logs whose words may be repeated to every user. Decoding flags
    given here (--candidates retrieved...) become the model's decoding default, as `chatbot train` stores them.
    """
    from chatbot.training.pipeline import index_model_dir

    model_dir = model or default_model_dir()
    given = any(value is not None for value in decode.values())
    config = decode_config(model_dir, decode) if given else None
    size = index_model_dir(model_dir, data, config)
    shown = {"decode": dataclasses.asdict(config)} if config else {}
    click.echo(json.dumps({"model": str(model_dir), "reply_index_bytes": size, **shown}))
