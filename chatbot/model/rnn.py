"""Recurrent cells behind one interface: a GRU or an LSTM whose state travels as one tensor.

A GRU's state is its hidden vector; an LSTM's is a hidden and a cell vector. Joining the LSTM's two on the last
dimension gives every cell a state of shape (layers, batch, state_size), so search can select, repeat and reorder
rows (``state[:, rows]``) without knowing which cell it drives.
"""

from __future__ import annotations

import torch
from torch import nn

GATES = {"GRU": 3, "LSTM": 4}  # the blocks of rows in each weight matrix, by nn.RNNBase.mode


def state_size(cell: str, hidden_size: int) -> int:
    """Width of one layer's state: the hidden size, doubled for an LSTM (hidden and cell)."""
    return 2 * hidden_size if cell == "lstm" else hidden_size


def make_rnn(cell: str, input_size: int, hidden_size: int, layers: int = 1, dropout: float = 0.0) -> nn.RNNBase:
    """A batch-first GRU or LSTM; ``dropout`` applies between stacked layers only."""
    kind = nn.LSTM if cell == "lstm" else nn.GRU
    return kind(input_size, hidden_size, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)


def run_rnn(rnn: nn.Module, inputs: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """inputs (batch, len, input), state (layers, batch, state_size) -> outputs (batch, len, hidden) and the new
    state (layers, batch, state_size). ``rnn`` is an nn.GRU or nn.LSTM, or its int8 twin (quantization.py), which
    is no subclass of them but has the same ``mode``."""
    if getattr(rnn, "mode", "") == "LSTM":
        hidden, cell = state.chunk(2, dim=-1)
        outputs, (hidden, cell) = rnn(inputs, (hidden.contiguous(), cell.contiguous()))
        return outputs, torch.cat([hidden, cell], dim=-1)
    outputs, new_state = rnn(inputs, state)
    return outputs, new_state


def top_hidden(state: torch.Tensor, hidden_size: int) -> torch.Tensor:
    """The last layer's hidden vector (batch, hidden) out of a state (layers, batch, state_size)."""
    return state[-1, :, :hidden_size]
