"""Attention: how strongly each decoder position looks at each context position.

Luong et al. (2015) scores: ``dot`` (q·m), ``general`` (q·Wm) and ``concat`` (v·tanh(W[q; m])). Bahdanau et al.'s
(2015) ``additive`` score, v·tanh(Uq + Wm), is the same function as concat; what makes it Bahdanau's is where the
decoder asks (before its RNN step, with the previous state: see decoder.py). The memory side of the score does not
change while decoding, so ``keys`` computes it once per reply.
"""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """Scores queries against memory, masks padding, and returns the weighted memory (the context vector)."""

    def __init__(self, hidden_size: int, score: str) -> None:
        super().__init__()
        self.score = score
        self.memory_projection = nn.Linear(hidden_size, hidden_size, bias=False) if score != "dot" else None
        additive = score in ("concat", "additive")
        self.query_projection = nn.Linear(hidden_size, hidden_size) if additive else None
        self.vector = nn.Linear(hidden_size, 1, bias=False) if additive else None

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """The memory side of the score: (batch, src_len, hidden) -> (batch, src_len, hidden)."""
        return memory if self.memory_projection is None else self.memory_projection(memory)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (batch, tgt_len, hidden), keys and memory (batch, src_len, hidden), mask (batch, src_len) with
        True at real tokens -> context (batch, tgt_len, hidden), weights (batch, tgt_len, src_len)."""
        scores = self._scores(query, keys)  # (batch, tgt_len, src_len)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        return torch.bmm(weights, memory), weights

    def _scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        if self.query_projection is None or self.vector is None:
            return torch.bmm(query, keys.transpose(1, 2))  # dot and general
        # concat and additive: v·tanh(Uq + Wm)
        mixed = torch.tanh(self.query_projection(query).unsqueeze(2) + keys.unsqueeze(1))  # (b, tgt, src, hidden)
        scores: torch.Tensor = self.vector(mixed).squeeze(-1)  # (batch, tgt_len, src_len)
        return scores
