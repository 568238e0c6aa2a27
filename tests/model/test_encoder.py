"""Encoder: the within-length reversal, and a context encodes the same alone as in a padded batch."""

from __future__ import annotations

import pytest
import torch

from chatbot.config import ModelConfig
from chatbot.model.encoder import Encoder, reverse_within_length

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
