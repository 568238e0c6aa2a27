"""Pipeline: from dialogue logs to a finished model directory — the work behind ``chatbot train``.

Steps: read every source (a bad line fails here, before any work), split by conversation, train the tokenizer on
the training side only, encode pairs, train, measure held-out perplexity, and save the directory atomically.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict
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
)
from chatbot.corpora import load_corpora
from chatbot.errors import ChatbotError
from chatbot.evaluation import perplexity
from chatbot.model.seq2seq import Seq2Seq
from chatbot.text.batching import EncodedPair, encode_pair
from chatbot.text.cleaning import clean_splits
from chatbot.text.pairs import Pair, split_pairs
from chatbot.text.tokenizer import Tokenizer
from chatbot.training import checkpoint
from chatbot.training.curves import history_jsonl, plot_history
from chatbot.training.trainer import Trainer, resolve_device

logger = logging.getLogger(__name__)


def train_model_dir(
    sources: Sequence[str],
    out: Path,
    shape: ModelShape,
    tokenizer_config: TokenizerConfig,
    context: ContextConfig,
    data: DataConfig,
    train: TrainConfig,
    report: Callable[[str], None],
) -> dict[str, Any]:
    """Train a model on ``sources`` and write it to ``out``; returns the metrics written beside it."""
    torch.manual_seed(train.seed)
    splits, cleaning = clean_splits(split_pairs(load_corpora(sources), context.history_turns), data)
    report(corpus_statistics(splits))
    report(f"cleaning: {cleaning.describe()}")
    if not splits["train"]:
        raise ChatbotError("no training pairs: the data has no conversation with two or more turns")
    tokenizer = Tokenizer.train(_tokenizer_texts(splits["train"]), tokenizer_config)
    encoded = {name: [encode_pair(pair, tokenizer, context) for pair in pairs] for name, pairs in splits.items()}
    model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, **asdict(shape)))
    device = resolve_device(train.device)
    model.to(device)
    parameters = sum(p.numel() for p in model.parameters())
    report(f"model: {parameters:,} parameters, vocabulary {tokenizer.vocab_size}, training on {device}")
    trainer = Trainer(model, tokenizer, train)
    summary = trainer.fit(encoded["train"], encoded["valid"])
    metrics: dict[str, Any] = {"training": asdict(summary), "pairs": {k: len(v) for k, v in splits.items()}}
    metrics["cleaning"] = asdict(cleaning)
    metrics.update(_held_out(model, tokenizer, encoded, train.batch_size))
    model.cpu()  # a model directory always loads on the CPU; the user's --device only speeds up training
    attachments = {"metrics.jsonl": history_jsonl(summary.history), "training_curve.png": plot_history(summary.history)}
    bundle = checkpoint.ModelBundle(model, tokenizer, context, DecodeConfig(), data)
    checkpoint.save(out, bundle, train, metrics, attachments)
    return metrics


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
