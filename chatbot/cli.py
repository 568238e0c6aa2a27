"""The ``chatbot`` command: the one composition root. It reads flags, ``CHATBOT_*`` environment variables and the
TOML config file (in that order of precedence, then built-in defaults), builds the objects, and calls them.

Heavy imports (torch, the model) happen inside the commands that need them, so ``--help`` stays instant.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import getpass
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import platformdirs

from chatbot import __version__
from chatbot.config import (
    ATTENTION_SCORES,
    CANDIDATE_SOURCES,
    CELLS,
    DECODE_STRATEGIES,
    LR_SCHEDULES,
    PRECISIONS,
    SAMPLING_SCHEDULES,
    ContextConfig,
    DataConfig,
    DecodeConfig,
    ModelShape,
    TokenizerConfig,
    TrainConfig,
    read_config_file,
)
from chatbot.errors import ChatbotError

if TYPE_CHECKING:
    from chatbot.dialogue.manager import DialogueManager

FC = TypeVar("FC", bound=Callable[..., Any])
APP_NAME = "chatbot"
ENV_PREFIX = "CHATBOT"
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_API_URL = "https://api.telegram.org"
SHARED_KEYS = ("db", "model", "threads")


def default_model_dir() -> Path:
    """The shipped model: inside an installed wheel, or in data/default-model of this checkout."""
    installed = PACKAGE_DIR / "default_model"
    return installed if installed.is_dir() else PACKAGE_DIR.parent / "data" / "default-model"


def default_db_url() -> str:
    from chatbot.storage.engine import default_database_url

    return default_database_url(Path(platformdirs.user_data_dir(APP_NAME)))


class UserError(click.ClickException):
    """A ChatbotError as click shows it: ``Error: <one line>`` on stderr and exit code 2."""

    exit_code = 2


class ChatbotGroup(click.Group):
    """A click group that turns a ChatbotError anywhere below it into a one-line message and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ChatbotError as error:
            raise UserError(str(error)) from error


def _config_map(path: Path | None, group: click.Group) -> dict[str, Any]:
    """Turn the TOML file into click's default_map for ``group``'s commands: each command's table, with the
    top-level shared keys added to every command (at any depth) that has an option of that name."""
    if path is None:
        candidate = Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"
        path = candidate if candidate.is_file() else None
    if path is None:
        return {}
    raw = _underscore_keys(read_config_file(path))
    return _command_defaults(group, {key: raw[key] for key in SHARED_KEYS if key in raw}, raw)


def _command_defaults(group: click.Group, shared: dict[str, Any], tables: dict[str, Any]) -> dict[str, Any]:
    """The default_map of ``group``: ``tables`` (its part of the config file) with, for each command found in the
    group itself, the ``shared`` keys that command has an option for (a command's own table wins)."""
    defaults = dict(tables)
    for name, command in group.commands.items():
        table = tables.get(name)
        table = table if isinstance(table, dict) else {}
        if isinstance(command, click.Group):
            defaults[name] = _command_defaults(command, shared, table)
        else:
            options = {param.name for param in command.params}
            defaults[name] = {**{key: value for key, value in shared.items() if key in options}, **table}
    return defaults


def _underscore_keys(table: dict[str, Any]) -> dict[str, Any]:
    """Config keys may be written like the flags (max-steps) or like Python names (max_steps)."""
    return {
        key.replace("-", "_"): _underscore_keys(value) if isinstance(value, dict) else value
        for key, value in table.items()
    }


def _field_default(cls: type, name: str) -> Any:
    return {f.name: f.default for f in dataclasses.fields(cls)}[name]


def field_option(cls: type, name: str, kind: click.ParamType[Any], help_text: str | None = None) -> Callable[[FC], FC]:
    """``--field-name`` for a config dataclass field: its default comes from the dataclass, so it lives in one place."""
    return click.option(
        f"--{name.replace('_', '-')}", name, type=kind, default=_field_default(cls, name), help=help_text
    )


def field_flag(cls: type, name: str, off: str, help_text: str) -> Callable[[FC], FC]:
    """``--field-name/--OFF`` for a boolean config dataclass field, its default from the dataclass."""
    flag = name.replace("_", "-")
    return click.option(f"--{flag}/--{off}", name, default=_field_default(cls, name), help=help_text)


@click.group(cls=ChatbotGroup, context_settings={"auto_envvar_prefix": ENV_PREFIX, "show_default": True})
@click.version_option(__version__, prog_name=APP_NAME)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CHATBOT_CONFIG",
    help="TOML config file. Top-level keys (db, model, threads) apply to every command; tables such as [train] "
    "to one. Default: config.toml in the user config directory, if present.",
)
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """A generative chatbot on an attention seq2seq model: train it on your own dialogue logs, then talk to it in
    the terminal or on Telegram.

    Every option can also come from an environment variable (shown in each command's --help) or the config file;
    a flag beats the environment, which beats the config file, which beats the default.
    """
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.default_map = _config_map(config_path, cli)


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


def threads_option() -> Callable[[FC], FC]:
    return click.option(
        "--threads",
        type=click.IntRange(min=0),
        default=0,
        envvar="CHATBOT_THREADS",
        show_envvar=True,
        help="CPU threads for PyTorch; 0 leaves PyTorch's default (one per core).",
    )


DECODE_HELP = {
    "strategy": "greedy, beam (batched beam search) or sample (temperature, top-k, top-p).",
    "beam_size": "Partial replies kept per step by beam search.",
    "length_penalty": "Beam search ranks by log-probability / ((5+length)/6)**this (0: raw; higher: longer).",
    "n_best": "Candidate replies kept per context (beam: at most --beam-size); the best is used.",
    "temperature": "Sampling: below 1 sharper, above 1 flatter than the model's distribution.",
    "top_k": "Sampling: draw only from the K likeliest pieces (0: all).",
    "top_p": "Sampling: draw only from the likeliest pieces whose probabilities add up to this (nucleus).",
    "block_ngram": "Never repeat an n-gram of this many pieces within a reply (0: off).",
    "block_repeat": "Never say a stretch of pieces twice in a row, or one piece three times (true/false).",
    "block_context_ngram": "Never copy an n-gram of this many pieces from the context (0: off).",
    "max_length": "Longest reply, in pieces.",
    "min_length": "Shortest reply, in pieces (retrieved candidates shorter than this are dropped too).",
    "mmi_weight": "Rerank the n-best replies by MMI anti-LM with this weight, against generic replies (0: off; "
    "try 0.3 with --strategy beam --n-best 5).",
    "mmi_prefix": "MMI penalises the context-free likelihood of this many first pieces of a reply.",
    "min_confidence": "Below this per-piece geometric-mean probability the bot says it is unsure instead (0: off).",
    "candidates": "What the reply is chosen from: generated (the search's best), retrieved (training replies to "
    "the closest training messages, from the model's reply index) or both; unless generated, the model rescores "
    "every candidate against the context (--mmi-weight, --length-penalty) and sends the best.",
    "retrieved": "How many training replies the reply index retrieves as candidates.",
    "retrieval_weight": "Candidates: add this times a retrieved reply's relevance (its BM25 score over the best "
    "retrieved one's, 0 for a generated reply) to its score.",
}


def session_timeout_option() -> Callable[[FC], FC]:
    return click.option(
        "--session-timeout",
        default="60m",
        metavar="DURATION",
        help="A conversation idle this long ends; the next message starts a new one (30m, 12h, 1d; 0: never).",
    )


def _session_timeout(text: str) -> Any:
    from chatbot.storage.maintenance import parse_duration

    return None if text.strip() in ("0", "off", "never") else parse_duration(text)


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

    options = [
        click.option(
            f"--{f.name.replace('_', '-')}",
            f.name,
            type=choices.get(f.name) or kinds[type(f.default)],
            default=None,
            help=f"{DECODE_HELP[f.name]}  {default(f.default)}",
        )
        for f in dataclasses.fields(DecodeConfig)
    ]

    def decorate(function: FC) -> FC:
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def _decode_config(model_dir: Path, options: dict[str, Any]) -> Any:
    """The model's stored DecodeConfig with the decode flags that were given (popped from ``options``) applied."""
    from chatbot.config import DecodeConfig, from_dict
    from chatbot.training import checkpoint

    given = {f.name: options.pop(f.name, None) for f in dataclasses.fields(DecodeConfig)}
    stored = checkpoint.read_config(model_dir).get("decode", {})
    return from_dict(DecodeConfig, {**stored, **{k: v for k, v in given.items() if v is not None}})


def _set_threads(threads: int) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)


def _build_manager(
    model_dir: Path | None,
    db_url: str | None,
    decode: dict[str, Any],
    quantize: bool,
    session_timeout: str,
    batching: tuple[int, int, contextlib.ExitStack] | None = None,
) -> DialogueManager:
    """The DialogueManager over the model and the database, both checked before the first message; ``decode``
    holds the decoding flags (None where not given). With ``batching`` (max batch above 1, torch threads, and
    the stack that stops what it starts), replies asked for at the same moment are generated together
    (micro_batch.py), by the model in a process of its own (model_process.py)."""
    from chatbot.dialogue.generator import Generator
    from chatbot.dialogue.manager import DialogueManager
    from chatbot.generation import ResponseGenerator
    from chatbot.micro_batch import MicroBatchGenerator
    from chatbot.model_process import ModelProcess
    from chatbot.storage.engine import open_database
    from chatbot.storage.locking import conversation_lock
    from chatbot.storage.store import sql_transaction

    model_dir = model_dir or default_model_dir()
    generator = ResponseGenerator(model_dir, _decode_config(model_dir, decode), quantize)
    sessions = open_database(db_url or default_db_url())
    generator.load()
    shared_lock = conversation_lock(sessions.kw["bind"])
    answerer: Generator = generator
    if batching is not None:
        max_batch, threads, resources = batching
        model_process = ModelProcess(model_dir, generator.decode_config, quantize, threads)
        resources.callback(model_process.close)
        batcher = MicroBatchGenerator(generator, max_batch, model_process.replies)
        resources.callback(batcher.close)  # callbacks run last first: the batcher drains before the process stops
        answerer = batcher
    return DialogueManager(
        answerer, sql_transaction(sessions), _session_timeout(session_timeout), shared_lock=shared_lock
    )


def _report(line: str) -> None:
    """Progress for the person running a command: stderr, so stdout stays machine-readable."""
    click.echo(line, err=True)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry and no $USER
        return "user"


def reply_printer(colour: bool) -> Callable[[str], None]:
    """Print a REPL reply, in the terminal's cyan when ``colour`` (a terminal that shows colour, and no NO_COLOR)."""

    def show(text: str) -> None:
        click.echo(click.style(text, fg="cyan") if colour else text, color=colour)

    return show


@cli.command()
@model_option()
@db_option()
@click.option(
    "--user",
    default=None,
    envvar="CHATBOT_USER",
    show_envvar=True,
    help="Whose conversation this is; each user has their own history. Default: your login name.",
)
@threads_option()
@quantize_option(default=True)
@session_timeout_option()
@decode_options()
def chat(
    model: Path | None,
    db: str | None,
    user: str | None,
    threads: int,
    quantize: bool,
    session_timeout: str,
    **decode: Any,
) -> None:
    """Talk to the bot in the terminal.

    With a terminal: line editing and input history, replies in colour (not with NO_COLOR set or TERM=dumb),
    Ctrl-C clears the line, Ctrl-D quits. With piped input: one message per line, exactly one reply line per
    message on stdout, exit 0 at the end of input. Lines starting with / are commands: /help, /reset (start a new
    conversation), /history [N] (the recent turns), /mode greedy|beam|sample, /beam N, /temperature T, /topp P
    and /settings [reset] (your decoding settings, stored with you; the decoding flags set the defaults), /why
    (how the last reply was made: model, decoding, score, then a table of the context pieces each reply piece
    attended to, its probability and the likeliest other pieces, and the replies a beam finds), /export (this
    conversation as text, on one line when piped), /forget (delete everything stored about you), /stats and
    /model (the database and the model), /quit.
    """
    from chatbot.channels import repl

    _set_threads(threads)
    manager = _build_manager(model, db, decode, quantize, session_timeout)
    name = user or _login_name()
    if sys.stdin.isatty():
        history = Path(platformdirs.user_state_dir(APP_NAME)) / "repl-history"
        colour = sys.stdout.isatty() and os.environ.get("TERM") != "dumb" and "NO_COLOR" not in os.environ
        greeting = "Type a message; /help for commands, /quit to leave."
        repl.run_interactive(manager, name, history, reply_printer(colour), greeting)
    else:
        repl.run_piped(manager, name, sys.stdin, sys.stdout)


@cli.command()
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
    "would have. --epochs, --max-steps, --time-budget, --patience and --device may change.",
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
@field_option(TrainConfig, "epochs", click.IntRange(min=1))
@field_option(TrainConfig, "batch_size", click.IntRange(min=1), "Most pairs in a batch.")
@field_option(
    TrainConfig,
    "batch_tokens",
    click.IntRange(min=0),
    "Also cap each batch's padded source+target pieces (0: no cap), so long pairs get smaller batches.",
)
@field_option(TrainConfig, "learning_rate", click.FloatRange(min=0, min_open=True))
@field_option(TrainConfig, "clip_norm", click.FloatRange(min=0, min_open=True), "Clip the gradient norm to this.")
@field_option(TrainConfig, "max_steps", click.IntRange(min=0), "Stop after this many steps (0: no limit).")
@click.option(
    "--time-budget",
    type=click.FloatRange(min=0),
    default=_field_default(TrainConfig, "time_budget_minutes"),
    help="Stop after this many minutes (0: no limit).",
)
@field_option(TrainConfig, "valid_every", click.IntRange(min=0), "Validate every N steps (0: each epoch).")
@field_option(
    TrainConfig,
    "precision",
    click.Choice(PRECISIONS),
    "auto: bf16 autocast where the hardware does bf16 natively (fp16 with loss scaling on older GPUs), else fp32.",
)
@field_option(
    TrainConfig,
    "scheduled_sampling",
    click.Choice(SAMPLING_SCHEDULES),
    "Feed the decoder some of its own predictions, more as training goes on (linear or inverse_sigmoid decay of "
    "the teacher-forcing ratio).",
)
@field_option(
    TrainConfig,
    "sampling_decay_steps",
    click.IntRange(min=1),
    "Steps over which the teacher-forcing ratio decays (inverse_sigmoid is halfway at half of them).",
)
@field_option(
    TrainConfig, "min_teacher_forcing", click.FloatRange(0, 1), "The teacher-forcing ratio never falls below this."
)
@field_option(
    TrainConfig,
    "checkpoint_every",
    click.IntRange(min=0),
    "Also save the resumable state every N steps (0: at validations only).",
)
@field_option(
    TrainConfig,
    "label_smoothing",
    click.FloatRange(0, 1, max_open=True),
    "Spread this much of the target probability over the vocabulary (training loss only).",
)
@field_option(TrainConfig, "weight_decay", click.FloatRange(min=0), "AdamW weight decay.")
@field_option(
    TrainConfig, "warmup_steps", click.IntRange(min=0), "Raise the learning rate linearly over this many steps."
)
@field_option(
    TrainConfig,
    "lr_schedule",
    click.Choice(LR_SCHEDULES),
    "After warmup: constant; plateau (halve the rate whenever validation does not improve); inverse_sqrt decay; "
    "or cosine decay to 0 at the last step (--max-steps, or the epochs).",
)
@field_option(
    TrainConfig,
    "patience",
    click.IntRange(min=0),
    "Stop after this many validations without improvement (0: never stop early).",
)
@field_option(TrainConfig, "device", click.STRING, "auto (CUDA if present, else CPU), cpu, cuda, cuda:1...")
@field_option(TrainConfig, "seed", click.INT)
@field_option(TokenizerConfig, "vocab_size", click.IntRange(min=50))
@field_option(ModelShape, "embedding_size", click.IntRange(min=1))
@field_option(ModelShape, "hidden_size", click.IntRange(min=1))
@field_option(ModelShape, "encoder_layers", click.IntRange(min=1))
@field_option(ModelShape, "decoder_layers", click.IntRange(min=1))
@field_option(ModelShape, "dropout", click.FloatRange(0, 1, max_open=True))
@field_option(
    ModelShape,
    "attention",
    click.Choice(ATTENTION_SCORES),
    "Luong's dot, general or concat (attention after the decoder step: whole-reply teacher forcing), or "
    "Bahdanau's additive (before the step; teacher forcing loops over positions).",
)
@field_option(ModelShape, "cell", click.Choice(CELLS), "Recurrent cell of encoder and decoder.")
@field_flag(ModelShape, "bidirectional", "unidirectional", "Read the context in both directions.")
@field_flag(ModelShape, "tie_embeddings", "no-tie-embeddings", "Decoder output projection reuses its input embedding.")
@field_flag(ModelShape, "share_embeddings", "no-share-embeddings", "Encoder and decoder share one embedding.")
@field_option(ContextConfig, "history_turns", click.IntRange(min=1), "Turns of context the model sees.")
@field_option(ContextConfig, "max_source_tokens", click.IntRange(min=1), "Context pieces kept (the latest).")
@field_option(ContextConfig, "max_target_tokens", click.IntRange(min=2), "Reply pieces kept, end included.")
@field_flag(
    DataConfig, "dedupe", "keep-duplicates", "Drop exact duplicate pairs, and held-out pairs that also occur in train."
)
@field_option(DataConfig, "min_reply_words", click.IntRange(min=0), "Drop pairs whose reply has fewer words.")
@field_option(
    DataConfig, "max_reply_words", click.IntRange(min=0), "Drop pairs whose reply has more words (0: no limit)."
)
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
    from chatbot.training.pipeline import RunOptions, train_model_dir

    sources = (*data, from_db) if from_db else data
    if not sources:
        raise click.UsageError("name at least one DATA source or --from-db URL")
    if resume and force:
        raise click.UsageError("--resume continues the unfinished run and --force discards it: pass one of them")
    if out.exists() and any(out.iterdir()) and not (force or resume):
        raise ChatbotError(f"{out} already exists and is not empty; pass --force to replace it")
    _set_threads(options.pop("threads"))
    shape = ModelShape(**{f.name: options.pop(f.name) for f in dataclasses.fields(ModelShape)})
    tokenizer = TokenizerConfig(vocab_size=options.pop("vocab_size"), seed=options["seed"])
    context = ContextConfig(**{f.name: options.pop(f.name) for f in dataclasses.fields(ContextConfig)})
    data_config = DataConfig(**{f.name: options.pop(f.name) for f in dataclasses.fields(DataConfig)})
    chosen = {f.name: options.pop(f.name) for f in dataclasses.fields(DecodeConfig)}
    decode = DecodeConfig(**{name: value for name, value in chosen.items() if value is not None})
    options["time_budget_minutes"] = options.pop("time_budget")
    config = TrainConfig(**options)
    index = all(is_public_corpus(source) for source in sources) if reply_index is None else reply_index
    if decode.candidates != "generated" and not index:  # the model could not answer as its decoding says
        raise click.UsageError(f"--candidates {decode.candidates} needs the reply index: add --reply-index")
    world = World.from_environment(os.environ)
    run = RunOptions(resume=resume, restart=force, tensorboard=tensorboard, world=world)
    try:
        metrics = train_model_dir(
            sources, out, shape, tokenizer, context, data_config, config, _report, run, decode, reply_index=index
        )
    finally:
        leave(world)
    if world.is_main:
        summary = {key: metrics[key] for key in ("valid", "test") if key in metrics}
        click.echo(json.dumps({"model": str(out), **summary}, indent=2))


@cli.command("index")
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
    config = _decode_config(model_dir, decode) if given else None
    size = index_model_dir(model_dir, data, config)
    shown = {"decode": dataclasses.asdict(config)} if config else {}
    click.echo(json.dumps({"model": str(model_dir), "reply_index_bytes": size, **shown}))


@cli.command("export-model")
@model_option()
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="TorchScript file to write."
)
@decode_options()
def export_model(model: Path | None, out: Path, **decode: Any) -> None:
    """Write the model and its beam search as one TorchScript file that runs with torch alone.

    Load it with torch.jit.load(FILE); calling it with one context's piece ids, a (1, length) int64 tensor, returns
    the n-best replies (piece ids) and their scores, decoded with the model's settings and the decoding flags
    (sampling is exported as greedy, and retrieved candidates are not exported: the reply is the beam's). The
    file carries the sentencepiece model as the buffer tokenizer_model and
    the context cap as max_source_tokens: build the context text as "<usr> message" (earlier turns before it).
    """
    from chatbot.scripting import script
    from chatbot.training import checkpoint

    model_dir = model or default_model_dir()
    config = _decode_config(model_dir, decode)
    bundle = checkpoint.load(model_dir)
    scripted = script(bundle.model, config, bundle.tokenizer, bundle.context.max_source_tokens)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    scripted.save(str(partial))
    partial.replace(out)  # atomically: a crash never leaves half a file at --out
    click.echo(json.dumps({"model": str(model_dir), "out": str(out), "decode": dataclasses.asdict(config)}, indent=2))


@cli.command("eval")
@model_option()
@click.argument("data", nargs=-1, required=True)
@click.option(
    "--split",
    type=click.Choice(["all", "train", "valid", "test"]),
    default="all",
    help="Which conversations of DATA to use (the split `train` makes).",
)
@click.option("--limit", type=click.IntRange(min=0), default=0, help="Evaluate at most this many pairs (0: all).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64)
@click.option(
    "--replies",
    type=click.IntRange(min=0),
    default=200,
    help="Generate replies for the first N pairs, one at a time, and report their quality and latency (0: skip).",
)
@click.option(
    "--compare",
    "other",
    type=click.Path(file_okay=False, path_type=Path),
    help="A second model directory to measure the same way; the JSON gets both, a table on stderr shows them.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the random draws of --strategy sample, so that a run's replies and figures can be reproduced.",
)
@threads_option()
@quantize_option(default=False)
@decode_options()
def evaluate(
    model: Path | None,
    data: tuple[str, ...],
    split: str,
    limit: int,
    batch_size: int,
    replies: int,
    other: Path | None,
    seed: int,
    threads: int,
    quantize: bool,
    **decode: Any,
) -> None:
    """Measure a model on dialogue logs and print the metrics as JSON: mean loss, token- and word-level
    perplexity (word perplexity is comparable across vocabularies), and under "replies" the quality of replies it
    generates with the decoding flags (BLEU, unigram F1, distinct-1/2, average length, the shares of generic, empty
    and looping replies, latency p50/p95 in ms)."""
    _set_threads(threads)
    model_dir = model or default_model_dir()
    measure = functools.partial(_evaluate_one, data=data, split=split, limit=limit, batch_size=batch_size, seed=seed)
    result = measure(model_dir, replies=replies, decode=dict(decode), quantize=quantize)
    if other is not None:
        result["compare"] = measure(other, replies=replies, decode=dict(decode), quantize=quantize)
        _report(_side_by_side(result, result["compare"]))
    click.echo(json.dumps(result, indent=2))


def _evaluate_one(
    model_dir: Path,
    *,
    data: tuple[str, ...],
    split: str,
    limit: int,
    batch_size: int,
    replies: int,
    seed: int,
    decode: dict[str, Any],
    quantize: bool,
) -> dict[str, Any]:
    from chatbot.evaluation import generated_reply_quality, held_out_pairs, perplexity
    from chatbot.generation import ResponseGenerator

    config = _decode_config(model_dir, decode)
    generator = ResponseGenerator(model_dir, config, quantize)
    bundle = generator.load()
    pairs = held_out_pairs(bundle, data, split, limit)
    result: dict[str, Any] = {"model": str(model_dir), "split": split, "quantized": quantize}
    result.update(dataclasses.asdict(perplexity(bundle.model, bundle.tokenizer, pairs, batch_size)))
    if replies:
        quality = generated_reply_quality(generator, pairs[:replies], config, seed)
        result["replies"] = {**dataclasses.asdict(quality), "decode": dataclasses.asdict(config)}
    return result


def _side_by_side(first: dict[str, Any], second: dict[str, Any]) -> str:
    """A plain-text table of the numeric metrics of two evaluations."""

    def numbers(result: dict[str, Any]) -> dict[str, float]:
        flat = {k: v for k, v in result.items() if isinstance(v, (int, float))}
        flat.update({k: v for k, v in result.get("replies", {}).items() if isinstance(v, (int, float))})
        return flat

    left, right = numbers(first), numbers(second)
    lines = [f"{'metric':<20} {'model':>14} {'compare':>14}"]
    lines += [f"{name:<20} {left[name]:>14.4g} {right.get(name, float('nan')):>14.4g}" for name in left]
    return "\n".join(lines)


@cli.command()
@click.option(
    "--token", envvar="TELEGRAM_BOT_TOKEN", show_envvar=True, required=True, help="Bot token from @BotFather."
)
@click.option(
    "--api-url",
    envvar="CHATBOT_TELEGRAM_API_URL",
    show_envvar=True,
    default=DEFAULT_API_URL,
    help="Bot API server root (a self-hosted telegram-bot-api works too).",
)
@click.option(
    "--webhook-url",
    envvar="CHATBOT_TELEGRAM_WEBHOOK_URL",
    show_envvar=True,
    metavar="URL",
    help="Serve a webhook instead of long polling: the public https URL Telegram POSTs updates to.",
)
@click.option(
    "--webhook-secret",
    envvar="CHATBOT_TELEGRAM_WEBHOOK_SECRET",
    show_envvar=True,
    metavar="SECRET",
    help="Secret Telegram sends with every update (A-Z, a-z, 0-9, _, -); a POST without it gets 403. "
    "Default: a new random one at each start.",
)
@click.option("--listen", default="127.0.0.1", show_default=True, help="Webhook mode: address to listen on.")
@click.option("--port", default=8443, show_default=True, type=click.IntRange(1, 65535), help="Webhook mode: port.")
@click.option(
    "--allow",
    "allowed",
    multiple=True,
    type=int,
    metavar="USER_ID",
    envvar="CHATBOT_TELEGRAM_ALLOW",
    show_envvar=True,
    help="Only these Telegram user ids may talk to the bot (repeat the flag; the variable takes a space-separated "
    "list). Default: everyone. Others get a polite refusal.",
)
@click.option(
    "--admin",
    "admins",
    multiple=True,
    type=int,
    metavar="USER_ID",
    envvar="CHATBOT_TELEGRAM_ADMIN",
    show_envvar=True,
    help="Telegram user ids that may use /stats and /model (always allowed to talk).",
)
@click.option(
    "--rate-limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    metavar="N",
    help="Messages per minute one user may send; more get a polite request to slow down (0: no limit).",
)
@click.option(
    "--max-batch",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="Replies for chats waiting at the same moment are generated in one model call of up to N, by the model in "
    "a process of its own (1: one by one, in the bot's process).",
)
@model_option()
@db_option()
@threads_option()
@quantize_option(default=True)
@session_timeout_option()
@decode_options()
def telegram(
    token: str,
    api_url: str,
    webhook_url: str | None,
    webhook_secret: str | None,
    listen: str,
    port: int,
    allowed: tuple[int, ...],
    admins: tuple[int, ...],
    rate_limit: int,
    max_batch: int,
    model: Path | None,
    db: str | None,
    threads: int,
    quantize: bool,
    session_timeout: str,
    **decode: Any,
) -> None:
    """Run the bot on Telegram until Ctrl-C: long polling, or with --webhook-url a webhook server on
    --listen:--port (put it behind an https reverse proxy). Each chat has its own history in the database (in
    groups, each member, and only messages that mention or reply to the bot are answered); /help lists the
    commands (/reset, /mode, /beam, /temperature, /topp, /settings, /why, /export, /forget; /stats and /model for
    --admin users). --allow limits who may talk to the bot, --rate-limit how fast. A message Telegram delivers
    again after a restart is not answered twice, and on start the messages of the last 24 hours that were never
    answered (the bot was stopped mid-turn) are answered first."""
    from chatbot.channels.telegram import Access, Webhook, new_webhook_secret, run_telegram

    if webhook_secret is not None and webhook_url is None:
        raise click.UsageError("--webhook-secret needs --webhook-url")
    webhook = None
    if webhook_url is not None:
        webhook = Webhook(webhook_url, webhook_secret or new_webhook_secret(), listen, port)
    _set_threads(threads)
    access = Access(frozenset(allowed), frozenset(admins), rate_limit)
    with contextlib.ExitStack() as resources:
        batching = (max_batch, threads, resources) if max_batch > 1 else None
        manager = _build_manager(model, db, decode, quantize, session_timeout, batching)
        run_telegram(token, api_url, manager, webhook, access)


@cli.group("db", cls=ChatbotGroup)
def db_group() -> None:
    """Manage the conversation database."""


@db_group.command("upgrade")
@db_option()
def db_upgrade(db: str | None) -> None:
    """Create the database or migrate it to the newest schema (also done automatically on start)."""
    from chatbot.storage.engine import describe, open_database, parse_url

    url = db or default_db_url()
    open_database(url)
    click.echo(f"database at {describe(parse_url(url))} is up to date")


@db_group.command("stats")
@db_option()
def db_stats(db: str | None) -> None:
    """Print what the database holds as JSON: conversations (open and per channel), users (and how many are
    blocked), messages by role, and the time span of the messages."""
    from chatbot.storage.engine import open_database
    from chatbot.storage.maintenance import database_stats

    with open_database(db or default_db_url()).begin() as session:
        click.echo(json.dumps(dataclasses.asdict(database_stats(session)), indent=2))


@db_group.command("prune")
@db_option()
@click.option(
    "--older-than",
    required=True,
    metavar="DURATION",
    help="Delete conversations whose last message is older than this: 30d, 12h, 90m or 2w.",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def db_prune(db: str | None, older_than: str, dry_run: bool) -> None:
    """Delete old conversations with all their messages, and then users left with no conversation (first seen
    before the cut-off, with their settings), in one transaction; print what went as JSON."""
    from datetime import datetime, timezone

    from chatbot.storage.engine import open_database
    from chatbot.storage.maintenance import parse_duration, prune

    age = parse_duration(older_than)
    with open_database(db or default_db_url()).begin() as session:
        result = prune(session, age, datetime.now(timezone.utc), dry_run)
    click.echo(json.dumps({"dry_run": dry_run, "older_than": older_than, **dataclasses.asdict(result)}, indent=2))


@db_group.command("block")
@db_option()
@click.argument("who", metavar="CHANNEL:ID")
@click.option("--undo", is_flag=True, help="Unblock instead.")
def db_block(db: str | None, who: str, undo: bool) -> None:
    """Block a user or chat (e.g. telegram:123456): the bot neither answers nor stores their messages. --undo
    lifts the block."""
    from chatbot.storage.engine import open_database
    from chatbot.storage.store import sql_transaction

    channel, _, external_id = who.partition(":")
    if not channel or not external_id:
        raise click.BadParameter(f"{who!r}: write CHANNEL:ID, such as telegram:123456", param_hint="CHANNEL:ID")
    with sql_transaction(open_database(db or default_db_url()))() as store:
        store.set_blocked(channel, external_id, not undo)
    click.echo(f"{who} is {'no longer ' if undo else ''}blocked")


@cli.command()
@db_option()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSONL file to write.")
@click.option("--user", "who", metavar="CHANNEL[:ID]", help="Only this channel's conversations, or one user's/chat's.")
@click.option("--since", metavar="DATE", help="Only conversations started at or after this ISO date/time (UTC).")
@click.option("--until", metavar="DATE", help="Only conversations started before this ISO date/time (UTC).")
def export(db: str | None, out: Path, who: str | None, since: str | None, until: str | None) -> None:
    """Write stored conversations (all, or those --user/--since/--until pick) as JSONL in the format `chatbot
    train` reads, to retrain on the bot's own conversations."""
    from chatbot.storage.engine import open_database
    from chatbot.storage.export import export_conversations
    from chatbot.storage.store import Selection, sql_transaction

    channel, _, external_id = (who or "").partition(":")
    selection = Selection(channel or None, external_id or None, _moment(since, "--since"), _moment(until, "--until"))
    count = export_conversations(sql_transaction(open_database(db or default_db_url())), out, selection)
    click.echo(f"wrote {count} conversations to {out}", err=True)


def _moment(text: str | None, flag: str) -> Any:
    """An ISO date or date-time as an aware datetime (UTC unless it names a zone); None stays None."""
    from datetime import datetime, timezone

    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise ChatbotError(
            f"{flag} {text!r} is not an ISO date or date-time, such as 2026-11-01 or 2026-11-01T08:00"
        ) from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def main() -> None:
    """Entry point of the ``chatbot`` console script."""
    cli(prog_name=APP_NAME)
