"""Pipeline: from dialogue logs to a finished model directory — the work behind ``chatbot train``.

Steps: read every source (a bad line fails here, before any work), split by conversation, train the tokenizer on
the training side only, encode pairs, train, measure held-out perplexity, and save the directory atomically.
While it trains, the unfinished run lives in ``OUT.partial`` (training/resume.py) so ``--resume`` can continue it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from chatbot.config import (
    ContextConfig,
    DataConfig,
    DecodeConfig,
    ModelConfig,
    ModelShape,
    TokenizerConfig,
    TrainConfig,
    from_dict,
)
from chatbot.corpora import load_corpora
from chatbot.errors import ChatbotError
from chatbot.evaluation import perplexity
from chatbot.model.seq2seq import Seq2Seq
from chatbot.reply_index import FILE_NAME as REPLY_INDEX
from chatbot.reply_index import build as build_reply_index
from chatbot.reply_quality import is_looping
from chatbot.search.scoring import target_log_probs
from chatbot.semantic import PieceVectors, Projection, SentenceEncoder, encoder_path, to_int8
from chatbot.text.batching import EncodedPair, encode_pair
from chatbot.text.cleaning import clean_splits
from chatbot.text.pairs import OTHER_TURN, Pair, last_turn, short_context_pairs, split_pairs
from chatbot.text.tokenizer import Tokenizer
from chatbot.training import checkpoint, config_json, distributed, resume
from chatbot.training.curves import history_jsonl, plot_history
from chatbot.training.distributed import World
from chatbot.training.metrics_log import MetricsLog
from chatbot.training.run_state import RunState, TrainSummary
from chatbot.training.trainer import Trainer, resolve_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How this invocation runs, beyond what the model directory records: continue the unfinished run
    (``resume``) or discard it (``restart``), log to TensorBoard, and this process's place under torchrun."""

    resume: bool = False
    restart: bool = False
    tensorboard: Path | None = None
    world: World = field(default_factory=World)


@dataclass(frozen=True)
class WarmStart:
    """A trained model to start from instead of random weights (``chatbot train --init-from``): its weights and
    its tokenizer, which the new run keeps (so the network's shape, vocabulary and context are the old model's).
    ``source`` says where it came from, in the run's record and its metrics."""

    bundle: checkpoint.ModelBundle
    source: dict[str, str]

    @classmethod
    def load(cls, directory: Path) -> WarmStart:
        digest = str(config_json.read_config(directory).get("sha256", {}).get("model.pt", ""))
        return cls(checkpoint.load(directory), {"model": str(directory), "model.pt sha256": digest})

    @property
    def shape(self) -> ModelShape:
        return from_dict(ModelShape, asdict(self.bundle.model.config))

    @property
    def tokenizer_config(self) -> TokenizerConfig:
        return self.bundle.tokenizer.config


def train_model_dir(
    sources: Sequence[str],
    out: Path,
    shape: ModelShape,
    tokenizer_config: TokenizerConfig,
    context: ContextConfig,
    data: DataConfig,
    train: TrainConfig,
    report: Callable[[str], None],
    options: RunOptions = RunOptions(),
    decode: DecodeConfig | None = None,
    reply_index: bool = False,
    start: WarmStart | None = None,
) -> dict[str, Any]:
    """Train a model on ``sources`` and write it to ``out`` with ``decode`` (default: DecodeConfig's) as its
    decoding default, and with ``reply_index`` an index of its training replies (reply_index.py); returns the
    metrics written beside it (on rank 0; other torchrun ranks return an empty dict). With ``start`` the run
    begins from that model's weights and tokenizer; ``shape``, ``tokenizer_config`` and ``context`` must be its."""
    world = options.world
    say = report if world.is_main else _silent
    device = resolve_device(train.device)
    if world.distributed:
        device = distributed.join(world, device)  # first: the ranks share the tokenizer below
    torch.manual_seed(train.seed)
    splits, cleaning = clean_splits(split_pairs(load_corpora(sources), context.history_turns), data)
    say(corpus_statistics(splits))
    say(f"cleaning: {cleaning.describe()}")
    if not splits["train"]:
        raise ChatbotError("no training pairs: the data has no conversation with two or more turns")
    run = {"sources": list(sources), "model": asdict(shape), "tokenizer": asdict(tokenizer_config)}
    run.update(context=asdict(context), data=asdict(data), train=asdict(train))
    if start is not None:
        run["init_from"] = start.source
    partial = resume.partial_dir(out)
    tokenizer, state = _open_run(partial, run, splits["train"], tokenizer_config, options, start)
    encoded, short = _encode(splits, tokenizer, context, data.short_context_share)
    if short:
        say(f"also training on {short:,} pairs with their context cut to its last turn")
    model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, **asdict(shape)))
    if start is not None and state is None:  # a resumed run restores its own weights
        model.load_state_dict(start.bundle.model.state_dict())
    model.to(device)
    parameters = sum(p.numel() for p in model.parameters())
    say(f"model: {parameters:,} parameters, vocabulary {tokenizer.vocab_size}, training on {device} x {world.size}")
    trainer = Trainer(model, tokenizer, train, world)
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(_metrics_log(partial, state, options)) if world.is_main else None
        save = functools.partial(resume.save_state, partial)
        summary = trainer.fit(encoded["train"], encoded["valid"], state, save, log.record if log else None)
    metrics: dict[str, Any] = {}
    if world.is_main:  # the other ranks wait at the barrier meanwhile
        metrics = {"training": asdict(summary), "pairs": {k: len(v) for k, v in splits.items()}}
        metrics.update({"short_context_pairs": short} if short else {})
        metrics.update({"init_from": start.source} if start is not None else {})
        metrics.update(cleaning=asdict(cleaning), processes=world.size)
        checkpoint.round_weights(model, train.weights)  # measure what model.pt will hold
        metrics.update(_held_out(model, tokenizer, encoded, train.batch_size))
        bundle = checkpoint.ModelBundle(model.cpu(), tokenizer, context, decode or DecodeConfig(), data)  # on any CPU
        index = reply_index_file(splits["train"], bundle) if reply_index else None
        _write_model(out, bundle, train, metrics, summary, index)
    distributed.barrier(world)
    return metrics


def _encode(
    splits: dict[str, list[Pair]], tokenizer: Tokenizer, context: ContextConfig, short_context_share: float
) -> tuple[dict[str, list[EncodedPair]], int]:
    """Every split's pairs as ids, the training side with its short-context pairs added (text/pairs.py); and how
    many those are. The held-out sides stay as they are, so their perplexity compares with any other run's."""
    encoded = {name: [encode_pair(pair, tokenizer, context) for pair in pairs] for name, pairs in splits.items()}
    short = short_context_pairs(splits["train"], short_context_share)
    encoded["train"] += [encode_pair(pair, tokenizer, context) for pair in short]
    return encoded, len(short)


def _write_model(
    out: Path,
    bundle: checkpoint.ModelBundle,
    train: TrainConfig,
    metrics: dict[str, Any],
    summary: TrainSummary,
    reply_index: bytes | None,
) -> None:
    """Save the finished model directory with its history, curve and reply index, then drop the unfinished run."""
    attachments = {"metrics.jsonl": history_jsonl(summary.history), "training_curve.png": plot_history(summary.history)}
    if reply_index is not None:
        attachments[REPLY_INDEX] = reply_index
    checkpoint.save(out, bundle, train, metrics, attachments)
    resume.finish(resume.partial_dir(out))


def reply_index_file(pairs: Sequence[Pair], bundle: checkpoint.ModelBundle) -> bytes:
    """The reply index of ``pairs`` (the training side) for ``bundle``'s model, as the bytes of its file: every
    reply the model could say whole (fewer than ``max_target_tokens`` pieces) and that does not loop, keyed by the
    turn it answered, with its context-free log-probability under the model and its sentence vector."""
    tokenizer = bundle.tokenizer
    kept = [
        (pair, ids)
        for pair in pairs
        if len(ids := tokenizer.encode(pair.response)) < bundle.context.max_target_tokens
        and not is_looping(pair.response)
    ]
    context_free = _context_free([ids for _, ids in kept], bundle)
    entries = (
        (last_turn(pair.context), pair.response, pair.conversation_id, score)
        for (pair, _), score in zip(kept, context_free, strict=True)
    )
    vectors = SentenceEncoder(encoder_path()).encode([pair.response for pair, _ in kept])
    projection = Projection.fit(vectors)
    projected = projection.apply(vectors)
    pieces = PieceVectors.fit([ids for _, ids in kept], projected, tokenizer.vocab_size)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / REPLY_INDEX
        count = build_reply_index(path, entries, to_int8(projected), projection, pieces)
        logger.info("reply index: %d replies, %.1f MB", count, path.stat().st_size / 1e6)
        return path.read_bytes()


@torch.no_grad()
def _context_free(replies: Sequence[list[int]], bundle: checkpoint.ModelBundle, batch_size: int = 256) -> list[float]:
    """log p(reply + eos | neutral context) of each reply under the bundle's model, in length-sorted batches."""
    tokenizer, model = bundle.tokenizer, bundle.model.eval()
    encoded = model.encode(torch.tensor([tokenizer.encode(OTHER_TURN)]))
    order = sorted(range(len(replies)), key=lambda i: len(replies[i]))
    scores = [0.0] * len(replies)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        targets = [[*replies[i], tokenizer.eos_id] for i in chunk]
        found = target_log_probs(model, encoded, [0] * len(chunk), targets, tokenizer.bos_id)
        for i, score in zip(chunk, found, strict=True):
            scores[i] = score
    return scores


def index_model_dir(model_dir: Path, sources: Sequence[str], decode: DecodeConfig | None = None) -> int:
    """Build the reply index of a trained model from the training side of ``sources``, split and cleaned as the
    model's own data was (its config), and add it to ``model_dir`` (with ``decode`` as its new decoding default);
    returns the index's size in bytes."""
    bundle = checkpoint.load(model_dir)
    splits, _ = clean_splits(split_pairs(load_corpora(sources), bundle.context.history_turns), bundle.data)
    if not splits["train"]:
        raise ChatbotError("no training pairs to index: the data has no conversation with two or more turns")
    index = reply_index_file(splits["train"], bundle)
    checkpoint.attach(model_dir, {REPLY_INDEX: index}, decode)
    return len(index)


def _open_run(
    partial: Path,
    run: dict[str, Any],
    train_pairs: Sequence[Pair],
    tokenizer_config: TokenizerConfig,
    options: RunOptions,
    start: WarmStart | None,
) -> tuple[Tokenizer, RunState | None]:
    """The tokenizer and, when resuming, the saved run state; a fresh run trains the tokenizer (on rank 0,
    shared with the other ranks), or keeps ``start``'s, and starts ``partial``. An unfinished run is never
    discarded silently."""
    world = options.world
    if options.resume:
        return resume.reopen(partial, run, tokenizer_config)
    if resume.has_state(partial) and not options.restart and world.is_main:
        raise ChatbotError(f"{partial} holds an unfinished run: pass --resume to continue it or --force to start over")
    if start is not None:
        tokenizer = start.bundle.tokenizer
    else:
        proto = Tokenizer.train(_tokenizer_texts(train_pairs), tokenizer_config).model_proto if world.is_main else b""
        tokenizer = Tokenizer(distributed.broadcast(proto, world), tokenizer_config)
    if world.is_main:
        resume.begin(partial, run, tokenizer)
    return tokenizer, None


def _metrics_log(partial: Path, state: RunState | None, options: RunOptions) -> MetricsLog:
    history = state.progress.summary.history if state is not None else ()
    return MetricsLog(partial / "metrics.jsonl", history, options.tensorboard)


def _silent(_: str) -> None:
    """The report of ranks other than 0: one process speaks for the run."""


def corpus_statistics(splits: dict[str, list[Pair]]) -> str:
    """One line about the data: conversations and pairs per split, mean context and reply length in words."""
    parts = []
    for name, pairs in splits.items():
        conversations = len({pair.conversation_id for pair in pairs})
        parts.append(f"{name} {len(pairs):,} pairs / {conversations:,} conversations")
    every = [pair for pairs in splits.values() for pair in pairs]
    if every:
        reply_words = sum(len(pair.response.split()) for pair in every) / len(every)
        context_words = sum(len(pair.context.split()) for pair in every) / len(every)
        parts.append(f"mean context {context_words:.1f} words, reply {reply_words:.1f} words")
    return "corpus: " + "; ".join(parts)


def _tokenizer_texts(pairs: Sequence[Pair]) -> list[str]:
    # Each turn appears as a response once; the contexts add the speaker markers in the positions the model sees.
    shuffled = [text for pair in pairs for text in (pair.response, pair.context)]
    random.Random(0).shuffle(shuffled)
    return shuffled


def _held_out(
    model: Seq2Seq, tokenizer: Tokenizer, encoded: dict[str, list[EncodedPair]], batch_size: int
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in ("valid", "test"):
        if encoded[name]:
            results[name] = asdict(perplexity(model, tokenizer, encoded[name], batch_size))
    return results
