"""Decoder: a GRU over the reply so far, Luong attention over the context, and a projection to the vocabulary.

Attention comes *after* the GRU step (Luong), so during teacher forcing the whole target runs through the GRU in
one call, with no Python loop over positions; greedy and beam search call the same code with one position.
"""

from __future__ import annotations

import torch
from torch import nn

from chatbot.config import ModelConfig
from chatbot.model.attention import Attention


class Decoder(nn.Module):
    """Predicts the next piece at every target position from the previous pieces and the encoded context."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_id)
        self.rnn = nn.GRU(
            config.embedding_size,
            config.hidden_size,
            num_layers=config.decoder_layers,
            batch_first=True,
            dropout=config.dropout if config.decoder_layers > 1 else 0.0,
        )
        self.attention = Attention(config.hidden_size, config.attention)
        self.combine = nn.Linear(2 * config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.vocab_size)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        target_in: torch.Tensor,
        hidden: torch.Tensor,
        keys: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """target_in (batch, tgt_len), hidden (layers, batch, hidden) -> logits (batch, tgt_len, vocab), the new
        hidden (layers, batch, hidden), and attention weights (batch, tgt_len, src_len)."""
        embedded = self.dropout(self.embedding(target_in))  # (batch, tgt_len, emb)
        outputs, hidden = self.rnn(embedded, hidden)  # (batch, tgt_len, hidden)
        context, weights = self.attention(outputs, keys, memory, mask)  # (batch, tgt_len, hidden)
        combined = torch.tanh(self.combine(torch.cat([outputs, context], dim=-1)))  # (batch, tgt_len, hidden)
        return self.output(self.dropout(combined)), hidden, weights
