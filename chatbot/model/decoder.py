"""Decoder: an RNN over the reply so far, attention over the context, and a projection to the vocabulary.

With Luong attention (dot, general, concat) attention comes *after* the RNN step, so during teacher forcing the
whole target runs through the RNN in one call, with no Python loop over positions. Bahdanau's additive attention
comes *before* the step: the previous state asks where to look, and the context it gets joins the embedding as the
RNN's input, so teacher forcing loops over positions (only the RNN and attention; embedding and output projection
still run over the whole target at once). Search calls the same code with one position at a time.
"""

from __future__ import annotations

import torch
from torch import nn

from chatbot.config import ModelConfig
from chatbot.model.attention import Attention
from chatbot.model.rnn import make_rnn, run_rnn, top_hidden


class Decoder(nn.Module):
    """Predicts the next piece at every target position from the previous pieces and the encoded context.

    With ``tie_embeddings`` the output projection reuses the embedding matrix (Press & Wolf 2017), so the layer
    before it produces ``embedding_size`` features instead of ``hidden_size``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.attend_first = config.attention == "additive"
        self.hidden_size = config.hidden_size
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_id)
        rnn_input = config.embedding_size + (config.hidden_size if self.attend_first else 0)
        self.rnn = make_rnn(config.cell, rnn_input, config.hidden_size, config.decoder_layers, config.dropout)
        self.attention = Attention(config.hidden_size, config.attention)
        features = config.embedding_size if config.tie_embeddings else config.hidden_size
        self.combine = nn.Linear(2 * config.hidden_size, features)
        self.output = nn.Linear(features, config.vocab_size)
        if config.tie_embeddings:
            self.output.weight = self.embedding.weight
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        target_in: torch.Tensor,
        state: torch.Tensor,
        keys: torch.Tensor,
        memory: torch.Tensor,
        mask: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """target_in (batch, tgt_len), state (layers, batch, state_size) -> logits (batch, tgt_len, vocab), the new
        state (layers, batch, state_size), and attention weights (batch, tgt_len, src_len).

        With ``keep`` (batch, tgt_len), True at the positions whose prediction is wanted (training: the real target
        pieces), logits are (kept, vocab) for those positions only: the two layers after attention, the output the
        largest, skip padding.
        """
        embedded = self.dropout(self.embedding(target_in))  # (batch, tgt_len, emb)
        if self.attend_first:
            outputs, state, context, weights = self._attend_then_step(embedded, state, keys, memory, mask)
        else:
            outputs, state = run_rnn(self.rnn, embedded, state)  # (batch, tgt_len, hidden)
            context, weights = self.attention(outputs, keys, memory, mask)  # (batch, tgt_len, hidden)
        joined = torch.cat([outputs, context], dim=-1)  # (batch, tgt_len, 2*hidden)
        if keep is not None:
            joined = joined[keep]  # (kept, 2*hidden)
        combined = torch.tanh(self.combine(joined))  # (batch, tgt_len, features), or (kept, features)
        return self.output(self.dropout(combined)), state, weights

    def _attend_then_step(
        self, embedded: torch.Tensor, state: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bahdanau: per position, attend from the previous top-layer state, then step the RNN on [embedding;
        context]. embedded (batch, tgt_len, emb) -> outputs and contexts (batch, tgt_len, hidden), the new state,
        and weights (batch, tgt_len, src_len)."""
        outputs, contexts, weights = [], [], []
        for position in range(embedded.size(1)):
            query = top_hidden(state, self.hidden_size).unsqueeze(1)  # (batch, 1, hidden)
            context, weight = self.attention(query, keys, memory, mask)  # (batch, 1, hidden), (batch, 1, src_len)
            step_input = torch.cat([embedded[:, position : position + 1], context], dim=-1)  # (batch, 1, emb+hidden)
            output, state = run_rnn(self.rnn, step_input, state)  # (batch, 1, hidden)
            outputs.append(output)
            contexts.append(context)
            weights.append(weight)
        return torch.cat(outputs, dim=1), state, torch.cat(contexts, dim=1), torch.cat(weights, dim=1)
