"""Candidates: the reply is chosen by the seq2seq model among its own n-best and replies retrieved from training.

A generated reply is fluent in the model's own way but often generic; a retrieved one was written by a person
but answered some other conversation. Pooling both and letting the model weigh each against *this* context keeps
what each is good at: the model is a better judge of fit than it is a writer.

Every candidate of a context is scored in one teacher-forced batch (search/scoring.py) as

    (log p(T | S) - mmi_weight * log U(T)) / length_penalty(|T| + 1) + retrieval_weight * relevance(T)
        + semantic_weight * similarity(message, T)

the first term the same form as MMI reranking of a beam (search/mmi.py): U is the model given a neutral context,
so a reply that fits any message ("hi!", "lol") gains nothing over one that fits this message. ``relevance`` is
a retrieved reply's BM25 score over the best one's of its search (reply_index.ReplyIndex.retrieve), in (0, 1], and
0 for a generated reply: how closely the message it answered matches this one, which a small model judges worse
than the index does.
``similarity`` is the cosine between the context's newest turn and the reply under a pretrained sentence encoder
(semantic.py: the encoder's vectors of the index's replies, and its linear student's of the message): a second
opinion on whether the reply is about what was said, which the small model is also bad at.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from chatbot.config import DecodeConfig
from chatbot.model.seq2seq import Seq2Seq
from chatbot.reply_index import Retrieved
from chatbot.search.beam import length_penalty
from chatbot.search.hypothesis import Hypothesis
from chatbot.search.scoring import target_log_probs
from chatbot.text.batching import pad

GENERATED = "generated"


@dataclass(frozen=True)
class Candidate:
    """A possible reply as piece ids (without bos/eos), where it came from (``generated``, or the id of the
    training conversation it was retrieved from), its relevance (see the module docstring), its whole
    context-free log-probability where the reply index knows it (None: scored here), its row in the reply index
    (-1: generated), and its semantic similarity to the user's message (semantic.py; 0 until one is set)."""

    tokens: list[int]
    source: str
    relevance: float = 0.0
    context_free: float | None = None
    row: int = -1
    similarity: float = 0.0


@dataclass(frozen=True)
class Choice:
    """The chosen candidate with its score (the ranking above) and confidence (geometric-mean piece
    probability under the context, as for a generated reply)."""

    tokens: list[int]
    source: str
    score: float
    confidence: float


def pool(
    generated: Sequence[Hypothesis],
    retrieved: Sequence[Retrieved],
    retrieved_ids: Sequence[list[int]],
    max_pieces: int,
    min_pieces: int = 1,
) -> list[Candidate]:
    """The candidates of one context: the generated hypotheses, then the retrieved replies (``retrieved_ids``
    holds their piece ids, in order), each distinct reply once, none of ``max_pieces`` pieces or more and none
    shorter than ``min_pieces`` (the decoding's minimum length, which the search keeps too)."""
    seen: set[tuple[int, ...]] = set()
    candidates = []
    best = max((r.score for r in retrieved), default=1.0)
    found = [Candidate(h.tokens, GENERATED) for h in generated]
    found += [
        Candidate(ids, r.conversation, r.score / best, r.context_free, r.row)
        for r, ids in zip(retrieved, retrieved_ids, strict=True)
    ]
    for candidate in found:
        if tuple(candidate.tokens) not in seen and min_pieces <= len(candidate.tokens) < max_pieces:
            seen.add(tuple(candidate.tokens))
            candidates.append(candidate)
    return candidates


def choose(found: Sequence[Sequence[Choice]]) -> list[Choice | None]:
    """The best of each context's scored candidates (``scored``'s; None where it has none): the first of the
    highest score."""
    return [max(each, key=lambda choice: choice.score, default=None) for each in found]


@torch.no_grad()
def scored(
    model: Seq2Seq,
    sources: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[Candidate]],
    neutral: Sequence[int],
    bos_id: int,
    eos_id: int,
    config: DecodeConfig,
) -> list[list[Choice]]:
    """Every candidate of each context as a Choice with its score (the module docstring's) and confidence, in
    order, all contexts' candidates scored in one teacher-forced batch: each after its context, and (with MMI) its
    first ``mmi_prefix`` pieces after the neutral context, encoded as one more row, unless the reply index already
    knows the whole reply's context-free log-probability and the prefix covers the whole reply."""
    rows = [row for row, found in enumerate(candidates) for _ in found]
    flat = [candidate for found in candidates for candidate in found]
    if not flat:
        return [[] for _ in sources]
    targets = [[*c.tokens, eos_id] for c in flat]
    anti = [0.0] * len(flat)
    if config.mmi_weight:
        # The index's figure is the whole reply's (eos included): usable when the prefix covers the whole reply.
        anti = [
            c.context_free if c.context_free is not None and config.mmi_prefix > len(c.tokens) else math.nan
            for c in flat
        ]
    unknown = [i for i, value in enumerate(anti) if math.isnan(value)]
    targets += [targets[i][: config.mmi_prefix] for i in unknown]
    contexts = [*sources, neutral] if unknown else list(sources)
    encoded = model.encode(pad(contexts, model.config.pad_id))
    scores = target_log_probs(model, encoded, rows + [len(sources)] * len(unknown), targets, bos_id)
    fitted = scores[: len(flat)]
    for i, value in zip(unknown, scores[len(flat) :], strict=True):
        anti[i] = value
    found: list[list[Choice]] = [[] for _ in sources]
    for row, candidate, log_prob, context_free in zip(rows, flat, fitted, anti, strict=True):
        pieces = len(candidate.tokens) + 1
        score = (log_prob - config.mmi_weight * context_free) / length_penalty(pieces, config.length_penalty)
        score += config.retrieval_weight * candidate.relevance + config.semantic_weight * candidate.similarity
        found[row].append(Choice(candidate.tokens, candidate.source, score, math.exp(log_prob / pieces)))
    return found
