"""Batching: encoded pairs -> padded tensors, grouped by length so little compute is spent on padding.

We pad rather than pack: on CPU, padded GRU/LSTM batches ran faster than ``pack_padded_sequence`` (see
shared notes), and length bucketing keeps the padding small. Masks keep padding out of attention and the loss.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from chatbot.config import ContextConfig
from chatbot.text.pairs import Pair
from chatbot.text.tokenizer import Tokenizer


@dataclass(frozen=True)
class EncodedPair:
    """A pair as subword ids: the source truncated from the left (keeping the latest turns), the target capped."""

    source: tuple[int, ...]
    target: tuple[int, ...]


@dataclass(frozen=True)
class Batch:
    """Padded tensors for teacher forcing: ``target_in`` is ``<bos> y``, ``target_out`` is ``y <eos>``."""

    source: torch.Tensor  # (batch, src_len)
    target_in: torch.Tensor  # (batch, tgt_len)
    target_out: torch.Tensor  # (batch, tgt_len)


def encode_pair(pair: Pair, tokenizer: Tokenizer, context: ContextConfig) -> EncodedPair:
    source = tokenizer.encode(pair.context)[-context.max_source_tokens :]
    target = tokenizer.encode(pair.response)[: context.max_target_tokens - 1]
    return EncodedPair(tuple(source) or (tokenizer.unk_id,), tuple(target))


def pad(rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Right-pad rows of ids into a (len(rows), longest) tensor."""
    width = max(len(row) for row in rows)
    return torch.tensor([list(row) + [pad_id] * (width - len(row)) for row in rows], dtype=torch.long)


def collate(pairs: Sequence[EncodedPair], tokenizer: Tokenizer) -> Batch:
    return Batch(
        source=pad([pair.source for pair in pairs], tokenizer.pad_id),
        target_in=pad([(tokenizer.bos_id, *pair.target) for pair in pairs], tokenizer.pad_id),
        target_out=pad([(*pair.target, tokenizer.eos_id) for pair in pairs], tokenizer.pad_id),
    )


def bucketed_batches(
    pairs: Sequence[EncodedPair],
    batch_size: int,
    tokenizer: Tokenizer,
    rng: random.Random | None,
    max_tokens: int = 0,
) -> list[Batch]:
    """Batches of similar source length, at most ``batch_size`` rows and, if set, ``max_tokens`` padded source and
    target positions. With ``rng``, ties and batch order are shuffled; without, the order is fixed."""
    keys = [rng.random() if rng else 0.0 for _ in pairs]
    order = sorted(range(len(pairs)), key=lambda i: (len(pairs[i].source), len(pairs[i].target), keys[i]))
    chunks = _chunks(order, pairs, batch_size, max_tokens)
    if rng:
        rng.shuffle(chunks)
    return [collate([pairs[i] for i in chunk], tokenizer) for chunk in chunks]


def _chunks(order: list[int], pairs: Sequence[EncodedPair], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Cut the length-sorted ``order`` into batches; a pair too long for the budget still gets a batch of its own."""
    chunks: list[list[int]] = []
    current: list[int] = []
    longest_source = longest_target = 0
    for index in order:
        source, target = len(pairs[index].source), len(pairs[index].target) + 1  # +1: bos or eos
        wider_source, wider_target = max(longest_source, source), max(longest_target, target)
        padded = (len(current) + 1) * (wider_source + wider_target)
        if current and (len(current) == batch_size or (max_tokens and padded > max_tokens)):
            chunks.append(current)
            current, wider_source, wider_target = [], source, target
        current.append(index)
        longest_source, longest_target = wider_source, wider_target
    if current:
        chunks.append(current)
    return chunks
