"""Attention: shapes, weights that sum to one, and zero weight on padded memory positions, for every score."""

from __future__ import annotations

import pytest
import torch

from chatbot.config import ATTENTION_SCORES
from chatbot.model.attention import Attention


@pytest.mark.parametrize("score", ATTENTION_SCORES)
def test_masked_positions_get_zero_weight(score: str) -> None:
    attention = Attention(hidden_size=7, score=score)
    query, memory = torch.randn(3, 5, 7), torch.randn(3, 4, 7)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False], [True, False, False, False]])
    context, weights = attention(query, attention.keys(memory), memory, mask)
    assert context.shape == (3, 5, 7)
    assert weights.shape == (3, 5, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
    assert torch.all(weights[~mask.unsqueeze(1).expand_as(weights)] == 0)
    torch.testing.assert_close(context[2], memory[2, :1].expand(5, 7))  # one real position: all weight on it


def test_dot_score_is_the_plain_inner_product() -> None:
    attention = Attention(hidden_size=3, score="dot")
    query = torch.tensor([[[1.0, 0.0, 0.0]]])
    memory = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    _, weights = attention(query, attention.keys(memory), memory, torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(weights, torch.softmax(torch.tensor([[[2.0, 0.0]]]), dim=-1))
