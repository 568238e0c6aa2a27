"""Constraints every search applies before choosing a piece: no padding or begin-of-sequence piece, no end before
``min_length``, n-gram blocking and repeat blocking.

Blocking (as in ParlAI and OpenNMT) sets a piece's score to -inf when choosing it would repeat an n-gram already in
the reply (``block_ngram``: no "i like it i like it") or copy one from the context (``block_context_ngram``: no
parroting the user). Repeat blocking (``block_repeat``) catches the loops shorter than the n-gram: a stretch of
pieces said again at once ("as well as well") or one piece three times ("no no no"). Replies are short, so the bans
are found with plain Python per row: at step t a row needs its last n-1 pieces looked up in an index of the
n-grams seen so far, and its tail compared with the stretch before it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch

from chatbot.config import DecodeConfig

NGramIndex = dict[tuple[int, ...], set[int]]  # the first n-1 pieces of each n-gram -> the pieces that followed


def ngram_index(tokens: Sequence[int], n: int) -> NGramIndex:
    """Every n-gram of ``tokens`` as prefix -> next pieces."""
    index: NGramIndex = defaultdict(set)
    for start in range(len(tokens) - n + 1):
        index[tuple(tokens[start : start + n - 1])].add(tokens[start + n - 1])
    return index


def banned(prefix: Sequence[int], n: int, seen: NGramIndex) -> set[int]:
    """The pieces that would complete an n-gram in ``seen`` after ``prefix`` (the reply so far)."""
    if n < 1 or len(prefix) < n - 1:
        return set()
    return seen.get(tuple(prefix[len(prefix) - n + 1 :]), set())


def repeat_bans(reply: Sequence[int]) -> set[int]:
    """The pieces that would end ``reply`` with a stretch of two or more pieces said twice in a row, or with one
    piece three times: [a, b, a] bans b, [a, b, c, a, b] bans c, [a, a] bans a."""
    n = len(reply)
    found = {reply[-1]} if n >= 2 and reply[-1] == reply[-2] else set()
    for size in range(2, (n + 1) // 2 + 1):  # the next piece would close a second copy of the last ``size``
        if list(reply[n - size + 1 :]) == list(reply[n - 2 * size + 1 : n - size]):
            found.add(reply[n - size])
    return found


def apply_constraints(
    log_probs: torch.Tensor,
    replies: Sequence[Sequence[int]],
    contexts: Sequence[NGramIndex],
    step: int,
    eos_id: int,
    config: DecodeConfig,
    never: Sequence[int] = (),
) -> torch.Tensor:
    """log_probs (rows, vocab) for the next piece of each row's reply so far -> the same with banned pieces at
    -inf. ``contexts`` holds each row's context n-gram index (for ``block_context_ngram``); ``never`` lists pieces
    no reply may contain (padding, begin-of-sequence)."""
    log_probs[:, list(never)] = float("-inf")
    if step < config.min_length:
        log_probs[:, eos_id] = float("-inf")
    if not (config.block_ngram or config.block_context_ngram or config.block_repeat):
        return log_probs
    rows: list[int] = []
    pieces: list[int] = []
    for row, reply in enumerate(replies):
        ban = banned(reply, config.block_ngram, ngram_index(reply, config.block_ngram)) if config.block_ngram else set()
        if config.block_context_ngram:
            ban = ban | banned(reply, config.block_context_ngram, contexts[row])
        if config.block_repeat:
            ban = ban | repeat_bans(reply)
        rows.extend([row] * len(ban))
        pieces.extend(ban)
    if rows:
        log_probs[torch.tensor(rows), torch.tensor(pieces)] = float("-inf")
    stuck = torch.isinf(log_probs).all(dim=-1)  # every piece banned: ending the reply is the only way out
    log_probs[stuck, eos_id] = 0.0
    return log_probs


def context_indexes(source: torch.Tensor, pad_id: int, config: DecodeConfig) -> list[NGramIndex]:
    """One n-gram index per source row (padding dropped), or empty ones when context blocking is off."""
    if not config.block_context_ngram:
        return [{} for _ in range(source.size(0))]
    return [ngram_index([t for t in row if t != pad_id], config.block_context_ngram) for row in source.tolist()]
