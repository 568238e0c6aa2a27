"""Encoder: embeds the context pieces and reads them with a bidirectional RNN that padding cannot disturb.

A plain ``nn.GRU(bidirectional=True)`` over right-padded rows starts its backward direction on the padding, so a
context encodes differently alone than in a batch with a longer one. ``pack_padded_sequence`` fixes that but ran
slower on CPU here. Instead each direction is its own RNN (GRU or LSTM) over dense tensors: the backward one
reads every row reversed *within its length*, which keeps the padding at the end, where it cannot reach a real
position. With ``bidirectional`` off only the forward RNNs exist.
"""

from __future__ import annotations

import torch
from torch import nn

from chatbot.config import ModelConfig
from chatbot.model.rnn import make_rnn, state_size


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first ``lengths[b]`` positions of each row of x (batch, seq, features); padding stays put.

    Applying it twice gives back ``x``.
    """
    positions = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # (1, seq)
    inside = positions < lengths.unsqueeze(1)  # (batch, seq)
    source = torch.where(inside, lengths.unsqueeze(1) - 1 - positions, positions)  # (batch, seq)
    return x.gather(1, source.unsqueeze(-1).expand_as(x))


class Encoder(nn.Module):
    """An RNN, bidirectional by default, whose directions are joined into one ``hidden_size`` vector per position.

    It also turns its final states into the decoder's initial state (the "bridge"), so the decoder may have a
    different number of layers, or another cell, than the encoder.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.pad_id = config.pad_id
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_id)
        width = (2 if config.bidirectional else 1) * config.hidden_size  # one position's output, directions joined
        sizes = [config.embedding_size] + [width] * (config.encoder_layers - 1)
        self.forward_layers = nn.ModuleList(make_rnn(config.cell, size, config.hidden_size) for size in sizes)
        self.backward_layers = nn.ModuleList(
            make_rnn(config.cell, size, config.hidden_size) for size in (sizes if config.bidirectional else [])
        )
        self.join_directions = nn.Linear(width, config.hidden_size)
        self.bridge = nn.Linear(width, state_size(config.cell, config.hidden_size))
        self.dropout = nn.Dropout(config.dropout)
        self.decoder_layers = config.decoder_layers
        self.hidden_size = config.hidden_size

    def forward(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``source`` (batch, src_len) into memory (batch, src_len, hidden) and the decoder's initial
        state (decoder_layers, batch, state_size)."""
        lengths = (source != self.pad_id).sum(dim=1).clamp(min=1)  # (batch,)
        states = self.dropout(self.embedding(source))  # (batch, src_len, emb)
        for index, forward_rnn in enumerate(self.forward_layers):
            if index:
                states = self.dropout(states)
            ahead, _ = forward_rnn(states)  # (batch, src_len, hidden)
            if not self.backward_layers:
                states = ahead
                continue
            behind, _ = self.backward_layers[index](reverse_within_length(states, lengths))
            states = torch.cat([ahead, reverse_within_length(behind, lengths)], dim=-1)  # (batch, src_len, 2*hidden)
        memory = torch.tanh(self.join_directions(states))  # (batch, src_len, hidden)
        return memory, self._initial_state(states, lengths)

    def _initial_state(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The forward direction's output at each row's last real position (and the backward one's at position 0),
        bridged to (decoder_layers, batch, state_size)."""
        hidden = self.hidden_size
        rows = torch.arange(states.size(0), device=states.device)
        summary = states[rows, lengths - 1, :hidden]  # (batch, hidden): the forward direction has read everything
        if self.backward_layers:
            summary = torch.cat([summary, states[:, 0, hidden:]], dim=-1)  # (batch, 2*hidden)
        initial = torch.tanh(self.bridge(summary))  # (batch, state_size)
        return initial.unsqueeze(0).repeat(self.decoder_layers, 1, 1).contiguous()
