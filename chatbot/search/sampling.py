"""Sampling: draw each next piece at random from the model's distribution, reshaped by temperature, top-k and
top-p (nucleus, Holtzman et al. 2020), for livelier and less repetitive replies than the likeliest ones.

Each context is decoded ``n_best`` times as separate rows of one batch; rows that end leave the batch. Pass a
seeded ``torch.Generator`` for reproducible draws.
"""

from __future__ import annotations

import torch

from chatbot.config import DecodeConfig
from chatbot.model.seq2seq import Seq2Seq
from chatbot.search.constraints import apply_constraints, context_indexes
from chatbot.search.hypothesis import Hypothesis


def filter_distribution(log_probs: torch.Tensor, config: DecodeConfig) -> torch.Tensor:
    """log_probs (rows, vocab) -> the tempered log-probabilities with every piece outside the top-k and the top-p
    nucleus at -inf (the likeliest piece always stays)."""
    scores = log_probs / config.temperature
    if config.top_k and config.top_k < scores.size(-1):
        kth = scores.topk(config.top_k, dim=-1).values[:, -1:]  # (rows, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if config.top_p < 1.0:
        ordered, order = scores.sort(dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        outside = probs.cumsum(dim=-1) - probs > config.top_p  # the mass before a piece already covers top_p
        scores = scores.scatter(-1, order, ordered.masked_fill(outside, float("-inf")))
    return scores


@torch.no_grad()
def sample(
    model: Seq2Seq,
    source: torch.Tensor,
    bos_id: int,
    eos_id: int,
    config: DecodeConfig,
    generator: torch.Generator | None = None,
) -> list[list[Hypothesis]]:
    """Decode source (batch, src_len) into ``n_best`` sampled replies per row, likeliest first."""
    batch, draws = source.size(0), config.n_best
    contexts = context_indexes(source, model.config.pad_id, config)
    never = (model.config.pad_id, bos_id)  # pieces no reply may contain
    rows = torch.arange(batch, device=source.device).repeat_interleave(draws)
    encoded = model.encode(source).select(rows)
    state, active = encoded.hidden, list(range(batch * draws))  # active: the original row of each batch row
    replies: list[list[int]] = [[] for _ in range(batch * draws)]
    log_prob = [0.0] * (batch * draws)
    ended = [False] * (batch * draws)
    previous = torch.full((batch * draws, 1), bos_id, device=source.device)
    for step in range(config.max_length):
        logits, state, _ = model.decode(previous, state, encoded)
        model_log_probs = torch.log_softmax(logits[:, -1].float(), dim=-1)  # (active, vocab)
        row_contexts = [contexts[row // draws] for row in active]
        allowed = apply_constraints(
            model_log_probs, [replies[r] for r in active], row_contexts, step, eos_id, config, never
        )
        probs = torch.softmax(filter_distribution(allowed, config), dim=-1)
        chosen = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (active,)
        picked = model_log_probs.gather(1, chosen.unsqueeze(1)).squeeze(1).tolist()
        for row, token, gained in zip(active, chosen.tolist(), picked, strict=True):
            log_prob[row] += gained
            if token == eos_id:
                ended[row] = True
            else:
                replies[row].append(token)
        keep = chosen != eos_id
        if not bool(keep.any()):
            break
        active = [row for row, going in zip(active, keep.tolist(), strict=True) if going]
        state, encoded, previous = state[:, keep], encoded.select(keep.nonzero().squeeze(1)), chosen[keep].unsqueeze(1)
    results = [
        [Hypothesis(replies[r], log_prob[r], log_prob[r]) for r in range(b * draws, (b + 1) * draws)]
        for b in range(batch)
    ]
    return [sorted(hypotheses, key=lambda h: h.score, reverse=True) for hypotheses in results]
