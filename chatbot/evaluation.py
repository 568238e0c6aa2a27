"""Evaluation: how well a model predicts held-out replies (token- and word-level perplexity), and how good the
replies it generates for them are (reply_quality.py: BLEU, F1, distinct-n, generic, empty and looping replies, latency).

Word-level perplexity is exp(total NLL / words), where words are the whitespace words of each reference reply plus
one for its end. The NLL is the same whatever the tokenizer, so models with different vocabularies compare fairly.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from chatbot.config import DecodeConfig
from chatbot.corpora import load_corpora
from chatbot.errors import ChatbotError
from chatbot.model.seq2seq import Seq2Seq
from chatbot.reply_quality import ReplyQuality, measure
from chatbot.text.batching import Batch, EncodedPair, bucketed_batches, encode_pair
from chatbot.text.cleaning import clean_splits
from chatbot.text.pairs import last_turn, split_pairs
from chatbot.text.tokenizer import Tokenizer

if TYPE_CHECKING:
    from chatbot.generation import ResponseGenerator
    from chatbot.training.checkpoint import ModelBundle


def masked_nll(
    logits: torch.Tensor, target_out: torch.Tensor, pad_id: int, label_smoothing: float = 0.0
) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over real target pieces: logits (..., vocab) and target_out (...) of the same leading
    shape — (batch, tgt_len, vocab) and (batch, tgt_len), or only the real positions, (pieces, vocab) and (pieces,).

    ``label_smoothing`` is for the training loss only; perplexity is always measured without it.
    """
    flat_logits, flat_targets = logits.reshape(-1, logits.size(-1)).float(), target_out.reshape(-1)
    total = F.cross_entropy(
        flat_logits, flat_targets, ignore_index=pad_id, reduction="sum", label_smoothing=label_smoothing
    )
    return total, int((target_out != pad_id).sum())


@torch.no_grad()
def batches_nll(model: Seq2Seq, batches: Sequence[Batch], pad_id: int) -> tuple[float, int]:
    """Total NLL and piece count over ``batches`` in eval mode (restores the previous mode)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in batches:
        target = batch.target_out.to(device)
        keep = target != pad_id
        logits = model(batch.source.to(device), batch.target_in.to(device), keep)  # (pieces, vocab)
        nll, pieces = masked_nll(logits, target[keep], pad_id)
        total, count = total + float(nll), count + pieces
    model.train(was_training)
    return total, count


def reference_words(tokenizer: Tokenizer, pairs: Sequence[EncodedPair]) -> int:
    """The word count word-level perplexity divides by: each reply's whitespace words, plus one for its end."""
    return sum(len(tokenizer.decode(pair.target).split()) + 1 for pair in pairs)


@dataclass(frozen=True)
class Perplexity:
    """Held-out fit of a model: mean NLL per piece, and perplexity per piece and per word."""

    pairs: int
    pieces: int
    words: int
    loss: float
    token_perplexity: float
    word_perplexity: float


def perplexity(model: Seq2Seq, tokenizer: Tokenizer, pairs: Sequence[EncodedPair], batch_size: int = 64) -> Perplexity:
    """Perplexity of ``model`` on encoded pairs (pieces include each reply's end-of-sequence)."""
    if not pairs:
        raise ValueError("no pairs to evaluate")
    total, pieces = batches_nll(model, bucketed_batches(pairs, batch_size, tokenizer, rng=None), tokenizer.pad_id)
    words = reference_words(tokenizer, pairs)
    return Perplexity(
        pairs=len(pairs),
        pieces=pieces,
        words=words,
        loss=total / pieces,
        token_perplexity=math.exp(total / pieces),
        word_perplexity=math.exp(total / words),
    )


def held_out_pairs(bundle: ModelBundle, sources: Sequence[str], split: str, limit: int) -> list[EncodedPair]:
    """The ``split`` (or ``all``) pairs of dialogue logs, encoded for ``bundle``'s model, the first ``limit`` if set.

    The pairs are cleaned as the model's training data was, so a model's own test split scores as it did in training.
    """
    splits, _ = clean_splits(split_pairs(load_corpora(sources), bundle.context.history_turns), bundle.data)
    pairs = [pair for name, items in splits.items() if split in ("all", name) for pair in items]
    pairs = pairs[:limit] if limit else pairs
    if not pairs:
        raise ChatbotError(f"no ({split}) context/response pairs in {', '.join(sources)}")
    return [encode_pair(pair, bundle.tokenizer, bundle.context) for pair in pairs]


def evaluate_sources(
    bundle: ModelBundle, sources: Sequence[str], split: str, limit: int, batch_size: int
) -> Perplexity:
    """Perplexity of a loaded model on the ``split`` pairs of dialogue logs (see ``held_out_pairs``)."""
    return perplexity(bundle.model, bundle.tokenizer, held_out_pairs(bundle, sources, split, limit), batch_size)


def generated_reply_quality(
    generator: ResponseGenerator, pairs: Sequence[EncodedPair], decode: DecodeConfig, seed: int = 0
) -> ReplyQuality:
    """Generate a reply to each pair's context one at a time, as a chat would (candidates retrieved and chosen
    where ``decode`` says so), and score the replies against the references (decoded from the same pieces, so both
    sides are normalised alike) and by latency. Sampled replies draw from a generator seeded with ``seed``, so the
    same call gives the same replies."""
    tokenizer, replies, references, seconds = generator.load().tokenizer, [], [], []
    draws = torch.Generator().manual_seed(seed)
    for pair in pairs:
        started = time.perf_counter()
        message = last_turn(tokenizer.decode(pair.source))  # what the reply index is searched by
        (best,) = generator.choices_for([list(pair.source)], [message], decode, draws)
        replies.append(tokenizer.decode_clean(best.tokens))
        seconds.append(time.perf_counter() - started)
        references.append(tokenizer.decode_clean(pair.target))
    return measure(replies, references, seconds)


@dataclass(frozen=True)
class EvaluationRequest:
    """What ``chatbot eval`` measures: the ``split`` pairs of ``sources`` (the first ``limit``, 0: all), scored
    ``batch_size`` at a time, and replies generated for the first ``replies`` of them with draws seeded by
    ``seed``."""

    sources: tuple[str, ...]
    split: str
    limit: int
    batch_size: int
    replies: int
    seed: int


def evaluate_model_dir(
    model_dir: Path, decode: DecodeConfig, quantize: bool, request: EvaluationRequest
) -> dict[str, Any]:
    """The perplexity of the model in ``model_dir`` and, unless ``request.replies`` is 0, the quality of the
    replies it generates with ``decode``, as ``chatbot eval`` prints them (JSON-ready)."""
    from chatbot.generation import ResponseGenerator

    generator = ResponseGenerator(model_dir, decode, quantize)
    bundle = generator.load()
    pairs = held_out_pairs(bundle, request.sources, request.split, request.limit)
    result: dict[str, Any] = {"model": str(model_dir), "split": request.split, "quantized": quantize}
    result.update(dataclasses.asdict(perplexity(bundle.model, bundle.tokenizer, pairs, request.batch_size)))
    if request.replies:
        quality = generated_reply_quality(generator, pairs[: request.replies], decode, request.seed)
        result["replies"] = {**dataclasses.asdict(quality), "decode": dataclasses.asdict(decode)}
    return result


def side_by_side(first: dict[str, Any], second: dict[str, Any]) -> str:
    """A plain-text table of the numeric metrics of two ``evaluate_model_dir`` results."""

    def numbers(result: dict[str, Any]) -> dict[str, float]:
        flat = {k: v for k, v in result.items() if isinstance(v, (int, float))}
        flat.update({k: v for k, v in result.get("replies", {}).items() if isinstance(v, (int, float))})
        return flat

    left, right = numbers(first), numbers(second)
    lines = [f"{'metric':<20} {'model':>14} {'compare':>14}"]
    lines += [f"{name:<20} {left[name]:>14.4g} {right.get(name, float('nan')):>14.4g}" for name in left]
    return "\n".join(lines)
