"""Encoder: the within-length reversal, a context encodes the same alone as in a padded batch, and with its
directions paired as apart."""

from __future__ import annotations

import pytest
import torch

from chatbot.config import ModelConfig
from chatbot.model.encoder import Encoder, paired, reverse_within_length
from chatbot.model.rnn import make_rnn

PAD = 0


def test_reverse_within_length_keeps_padding_in_place_and_undoes_itself() -> None:
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0], [6, 0, 0, 0]]).unsqueeze(-1)
    lengths = torch.tensor([3, 2, 1])
    reversed_x = reverse_within_length(x, lengths)
    assert reversed_x.squeeze(-1).tolist() == [[3, 2, 1, 0], [5, 4, 0, 0], [6, 0, 0, 0]]
    assert torch.equal(reverse_within_length(reversed_x, lengths), x)


@pytest.mark.parametrize("layers", [1, 2])
def test_padding_does_not_change_the_encoding(layers: int) -> None:
    config = ModelConfig(
        vocab_size=13,
        pad_id=PAD,
        embedding_size=5,
        hidden_size=7,
        encoder_layers=layers,
        decoder_layers=2,
        dropout=0.0,
    )
    encoder = Encoder(config).eval()
    short = torch.tensor([[4, 5, 6]])
    batch = torch.tensor([[7, 8, 9, 10, 11, 12], [4, 5, 6, PAD, PAD, PAD]])
    alone_memory, alone_hidden = encoder(short)
    batch_memory, batch_hidden = encoder(batch)
    torch.testing.assert_close(batch_memory[1, :3], alone_memory[0])
    torch.testing.assert_close(batch_hidden[:, 1], alone_hidden[:, 0])
    assert alone_hidden.shape == (2, 1, 7)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_a_paired_rnn_runs_two_rnns_side_by_side(cell: str) -> None:
    torch.manual_seed(0)
    ahead, behind = make_rnn(cell, 5, 7), make_rnn(cell, 5, 7)
    first, second = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    both, _ = paired(ahead, behind)(torch.cat([first, second], dim=-1))
    assert both.shape == (3, 4, 14)
    torch.testing.assert_close(both[..., :7], ahead(first)[0])
    torch.testing.assert_close(both[..., 7:], behind(second)[0])


def test_only_one_layer_rnns_of_one_cell_pair() -> None:
    with pytest.raises(ValueError, match="same cell"):
        paired(make_rnn("gru", 5, 7), make_rnn("lstm", 5, 7))
    with pytest.raises(ValueError, match="one-layer"):
        paired(make_rnn("gru", 5, 7, layers=2), make_rnn("gru", 5, 7, layers=2))


@pytest.mark.parametrize(("cell", "layers"), [("gru", 1), ("gru", 2), ("lstm", 2)])
def test_paired_directions_encode_a_padded_batch_as_apart(cell: str, layers: int) -> None:
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=13, pad_id=PAD, embedding_size=5, hidden_size=7, encoder_layers=layers, cell=cell, dropout=0.0
    )
    encoder = Encoder(config).eval()
    batch = torch.tensor([[7, 8, 9, 10, 11, 12], [4, 5, 6, PAD, PAD, PAD]])
    apart_memory, apart_hidden = encoder(batch)
    encoder.pair_directions()
    assert len(encoder.paired_layers) == layers and not encoder.forward_layers and not encoder.backward_layers
    paired_memory, paired_hidden = encoder(batch)
    torch.testing.assert_close(paired_memory, apart_memory)
    torch.testing.assert_close(paired_hidden, apart_hidden)
