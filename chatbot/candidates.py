"""Candidates: the reply is chosen by the seq2seq model among its own n-best and replies retrieved from training.

A generated reply is fluent in the model's own way but often generic; a retrieved one was written by a person
but answered some other conversation. Pooling both and letting the model weigh each against *this* context keeps
what each is good at: the model is a better judge of fit than it is a writer.

Every candidate of a context is scored in one teacher-forced batch (search/scoring.py) as

    (log p(T | S) - mmi_weight * log U(T)) / length_penalty(|T| + 1) + retrieval_weight * relevance(T)

the first term the same form as MMI reranking of a beam (search/mmi.py): U is the model given a neutral context,
so a reply that fits any message ("hi!", "lol") gains nothing over one that fits this message. ``relevance`` is
a retrieved reply's BM25 score over the best one's for this context, in (0, 1], and 0 for a generated reply: how
closely the message it answered matches this one, which a small model judges worse than the index does.
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
from chatbot.search.mmi import prefix_log_probs
from chatbot.search.scoring import target_log_probs
from chatbot.text.batching import pad

GENERATED = "generated"


@dataclass(frozen=True)
class Candidate:
    """A possible reply as piece ids (without bos/eos), where it came from (``generated``, or the id of the
    training conversation it was retrieved from), and its relevance (see the module docstring)."""

    tokens: list[int]
    source: str
    relevance: float = 0.0


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
    found = [(h.tokens, GENERATED, 0.0) for h in generated]
    found += [(ids, r.conversation, r.score / best) for r, ids in zip(retrieved, retrieved_ids, strict=True) if ids]
    for tokens, source, relevance in found:
        if tuple(tokens) not in seen and min_pieces <= len(tokens) < max_pieces:
            seen.add(tuple(tokens))
            candidates.append(Candidate(list(tokens), source, relevance))
    return candidates


@torch.no_grad()
def choose(
    model: Seq2Seq,
    sources: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[Candidate]],
    neutral: Sequence[int],
    bos_id: int,
    eos_id: int,
    config: DecodeConfig,
) -> list[Choice | None]:
    """The best candidate of each context (``sources[i]``'s piece ids; None where it has no candidate), all
    contexts' candidates scored in one teacher-forced batch."""
    rows = [row for row, found in enumerate(candidates) for _ in found]
    flat = [candidate for found in candidates for candidate in found]
    if not flat:
        return [None] * len(sources)
    encoded = model.encode(pad(sources, model.config.pad_id))
    fitted = target_log_probs(model, encoded, rows, [[*c.tokens, eos_id] for c in flat], bos_id)
    anti = [0.0] * len(flat)
    if config.mmi_weight:
        anti = prefix_log_probs(model, [c.tokens for c in flat], neutral, bos_id, eos_id, config.mmi_prefix)
    best: list[Choice | None] = [None] * len(sources)
    for row, candidate, log_prob, context_free in zip(rows, flat, fitted, anti, strict=True):
        pieces = len(candidate.tokens) + 1
        score = (log_prob - config.mmi_weight * context_free) / length_penalty(pieces, config.length_penalty)
        score += config.retrieval_weight * candidate.relevance
        current = best[row]
        if current is None or score > current.score:
            best[row] = Choice(candidate.tokens, candidate.source, score, math.exp(log_prob / pieces))
    return best
