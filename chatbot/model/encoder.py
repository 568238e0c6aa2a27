"""Encoder: embeds the context pieces and reads them with a bidirectional RNN that padding cannot disturb.

A plain ``nn.GRU(bidirectional=True)`` over right-padded rows starts its backward direction on the padding, so a
context encodes differently alone than in a batch with a longer one. ``pack_padded_sequence`` fixes that but ran
slower on CPU here. Instead each direction is its own RNN (GRU or LSTM) over dense tensors: the backward one
reads every row reversed *within its length*, which keeps the padding at the end, where it cannot reach a real
position. With ``bidirectional`` off only the forward RNNs exist.

For int8 inference (quantization.py) each layer's two directions are *paired*: run as one RNN of twice the width
whose block-diagonal weights keep the halves apart (``paired``). At a batch of one, an int8 step costs its
overhead, not its arithmetic, so one RNN over both directions takes about two thirds of the time of two.
"""

from __future__ import annotations

import torch
from torch import nn

from chatbot.config import ModelConfig
from chatbot.model.rnn import GATES, make_rnn, state_size


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first ``lengths[b]`` positions of each row of x (batch, seq, features); padding stays put.

    Applying it twice gives back ``x``.
    """
    positions = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # (1, seq)
    inside = positions < lengths.unsqueeze(1)  # (batch, seq)
    source = torch.where(inside, lengths.unsqueeze(1) - 1 - positions, positions)  # (batch, seq)
    return x.gather(1, source.unsqueeze(-1).expand_as(x))


def paired(ahead: nn.Module, behind: nn.Module) -> nn.RNNBase:
    """One RNN that runs two one-layer RNNs of the same cell and shape side by side: its input is theirs joined on
    the last dimension, and so are its outputs, equal to theirs up to float rounding. Each gate's weights are
    block-diagonal, so each half of the state reads only its own RNN's input and state."""
    if not isinstance(ahead, nn.RNNBase) or not isinstance(behind, nn.RNNBase) or ahead.mode != behind.mode:
        raise ValueError("paired RNNs must be GRUs or LSTMs of the same cell")
    if ahead.num_layers != 1 or behind.num_layers != 1:
        raise ValueError("paired RNNs must be one-layer RNNs")
    gates, hidden, width = GATES[ahead.mode], ahead.hidden_size, ahead.input_size
    twin = make_rnn(ahead.mode.lower(), 2 * width, 2 * hidden)
    with torch.no_grad():
        for name, joined in twin.named_parameters():  # weight_ih_l0 (gates*2h, 2w), weight_hh_l0, bias_ih_l0, ...
            joined.zero_()
            halves = zip(getattr(ahead, name).chunk(gates), getattr(behind, name).chunk(gates), strict=True)
            for gate, (first, second) in enumerate(halves):
                rows = joined[gate * 2 * hidden : (gate + 1) * 2 * hidden]  # (2h, 2 columns) or (2h,)
                if rows.dim() == 1:
                    rows[:hidden], rows[hidden:] = first, second
                else:
                    columns = first.size(1)  # the input width, or the hidden size for weight_hh
                    rows[:hidden, :columns], rows[hidden:, columns:] = first, second
    return twin.train(ahead.training)


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
        self.paired_layers = nn.ModuleList()  # empty until pair_directions()
        self.join_directions = nn.Linear(width, config.hidden_size)
        self.bridge = nn.Linear(width, state_size(config.cell, config.hidden_size))
        self.dropout = nn.Dropout(config.dropout)
        self.decoder_layers = config.decoder_layers
        self.hidden_size = config.hidden_size
        self.layers = config.encoder_layers
        self.bidirectional = config.bidirectional

    def pair_directions(self) -> None:
        """Run each layer's two directions as one RNN from now on (``paired``; its separate RNNs are dropped): for
        int8 inference, where it is faster. The same encoding up to float rounding; not for training, whose
        gradients would fill the zero blocks."""
        if self.bidirectional and not self.paired_layers:
            pairs = zip(self.forward_layers, self.backward_layers, strict=True)
            self.paired_layers = nn.ModuleList(paired(ahead, behind) for ahead, behind in pairs)
            self.forward_layers, self.backward_layers = nn.ModuleList(), nn.ModuleList()

    def forward(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``source`` (batch, src_len) into memory (batch, src_len, hidden) and the decoder's initial
        state (decoder_layers, batch, state_size)."""
        lengths = (source != self.pad_id).sum(dim=1).clamp(min=1)  # (batch,)
        states = self.dropout(self.embedding(source))  # (batch, src_len, emb)
        for index in range(self.layers):
            if index:
                states = self.dropout(states)
            states = self._read(index, states, lengths)  # (batch, src_len, width)
        memory = torch.tanh(self.join_directions(states))  # (batch, src_len, hidden)
        return memory, self._initial_state(states, lengths)

    def _read(self, index: int, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Layer ``index`` over states (batch, src_len, features) -> (batch, src_len, hidden), or with both
        directions (batch, src_len, 2*hidden): the backward one's outputs put back in reading order."""
        if not self.bidirectional:
            outputs: torch.Tensor = self.forward_layers[index](states)[0]
            return outputs
        backwards = reverse_within_length(states, lengths)
        if self.paired_layers:
            both, _ = self.paired_layers[index](torch.cat([states, backwards], dim=-1))  # (batch, src_len, 2*hidden)
            ahead, behind = both.split(self.hidden_size, dim=-1)
        else:
            ahead, behind = self.forward_layers[index](states)[0], self.backward_layers[index](backwards)[0]
        return torch.cat([ahead, reverse_within_length(behind, lengths)], dim=-1)

    def _initial_state(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The forward direction's output at each row's last real position (and the backward one's at position 0),
        bridged to (decoder_layers, batch, state_size)."""
        hidden = self.hidden_size
        rows = torch.arange(states.size(0), device=states.device)
        summary = states[rows, lengths - 1, :hidden]  # (batch, hidden): the forward direction has read everything
        if self.bidirectional:
            summary = torch.cat([summary, states[:, 0, hidden:]], dim=-1)  # (batch, 2*hidden)
        initial = torch.tanh(self.bridge(summary))  # (batch, state_size)
        return initial.unsqueeze(0).repeat(self.decoder_layers, 1, 1).contiguous()
