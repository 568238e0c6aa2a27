"""Seq2Seq: the encoder and decoder joined; ``encode`` once per context, ``decode`` as often as search needs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from chatbot.config import ModelConfig
from chatbot.model.decoder import Decoder
from chatbot.model.encoder import Encoder


@dataclass(frozen=True)
class Encoded:
    """What the decoder needs from the encoder, computed once per batch of contexts."""

    memory: torch.Tensor  # (batch, src_len, hidden)
    keys: torch.Tensor  # (batch, src_len, hidden): the attention's memory-side projection
    mask: torch.Tensor  # (batch, src_len), True at real tokens
    hidden: torch.Tensor  # (decoder_layers, batch, state_size): the decoder's initial state (see rnn.py)

    def select(self, rows: torch.Tensor) -> Encoded:
        """Keep only the batch rows ``rows`` (search drops finished replies or repeats rows for beams)."""
        return Encoded(self.memory[rows], self.keys[rows], self.mask[rows], self.hidden[:, rows])


class Seq2Seq(nn.Module):
    """An attention encoder-decoder over subword ids; ``forward`` gives teacher-forced logits.

    With ``share_embeddings`` the decoder reads the encoder's embedding module (one vocabulary serves both sides);
    the state dict then names the one matrix under both modules, and loading restores the sharing.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        if config.share_embeddings:
            self.decoder.embedding = self.encoder.embedding
            if config.tie_embeddings:
                self.decoder.output.weight = self.encoder.embedding.weight

    def encode(self, source: torch.Tensor) -> Encoded:
        """source (batch, src_len) of ids, right-padded with ``pad_id``."""
        memory, hidden = self.encoder(source)
        return Encoded(memory, self.decoder.attention.keys(memory), source != self.config.pad_id, hidden)

    def decode(
        self, target_in: torch.Tensor, hidden: torch.Tensor, encoded: Encoded, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """target_in (batch, tgt_len) -> logits (batch, tgt_len, vocab) (or (kept, vocab) with ``keep``, see
        Decoder.forward), hidden, attention (batch, tgt_len, src_len)."""
        logits, hidden, weights = self.decoder(target_in, hidden, encoded.keys, encoded.memory, encoded.mask, keep)
        return logits, hidden, weights

    def forward(self, source: torch.Tensor, target_in: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: source (batch, src_len), target_in (batch, tgt_len) -> logits (batch, tgt_len, vocab), or
        (kept, vocab) at the positions where ``keep`` (batch, tgt_len) is True."""
        encoded = self.encode(source)
        logits, _, _ = self.decode(target_in, encoded.hidden, encoded, keep)
        return logits
