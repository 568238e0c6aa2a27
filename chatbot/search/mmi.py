"""MMI anti-LM reranking (Li et al. 2016): prefer replies that are likely *given this context* over replies that
are likely anyway ("i don't know" fits every context, so a plain language model also rates it highly).

Each of the n-best hypotheses T of a context S is rescored as

    (log p(T | S) - weight * log U(T)) / length_penalty(|T|)

where U(T) is the probability of T's first ``prefix`` pieces under a language model. Following the paper only the
first pieces are penalised, where generic openings live; later pieces are left to p(T | S) to keep replies
grammatical. The language model is the same seq2seq given a neutral context (just the marker of a user turn), so
no second model is needed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from chatbot.config import DecodeConfig
from chatbot.model.seq2seq import Seq2Seq
from chatbot.search.beam import length_penalty
from chatbot.search.hypothesis import Hypothesis
from chatbot.search.scoring import target_log_probs


def prefix_log_probs(
    model: Seq2Seq, replies: Sequence[Sequence[int]], neutral: Sequence[int], bos_id: int, eos_id: int, prefix: int
) -> list[float]:
    """log U(T) for each reply: the log-probability of its first ``prefix`` pieces (eos counts as one) after the
    ``neutral`` context, by one teacher-forced batch."""
    if not replies:
        return []
    targets = [[*reply, eos_id][:prefix] for reply in replies]
    encoded = model.encode(torch.tensor([list(neutral)]))  # one context row, shared by every reply
    return target_log_probs(model, encoded, [0] * len(targets), targets, bos_id)


def rerank(
    model: Seq2Seq,
    hypotheses: Sequence[Hypothesis],
    neutral: Sequence[int],
    bos_id: int,
    eos_id: int,
    config: DecodeConfig,
) -> list[Hypothesis]:
    """The hypotheses rescored by MMI anti-LM (``config.mmi_weight``, ``config.mmi_prefix``), best first."""
    if not hypotheses or config.mmi_weight == 0:
        return list(hypotheses)
    anti = prefix_log_probs(model, [h.tokens for h in hypotheses], neutral, bos_id, eos_id, config.mmi_prefix)
    rescored = [
        dataclasses.replace(
            h, score=(h.log_prob - config.mmi_weight * lm) / length_penalty(len(h.tokens) + 1, config.length_penalty)
        )
        for h, lm in zip(hypotheses, anti, strict=True)
    ]
    return sorted(rescored, key=lambda h: h.score, reverse=True)
