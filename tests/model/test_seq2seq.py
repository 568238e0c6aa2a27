"""Seq2Seq: shapes through every layer, teacher forcing equal to step-by-step decoding, and overfitting 4 pairs."""

from __future__ import annotations

import pytest
import torch

from chatbot.config import ATTENTION_SCORES, ModelConfig
from chatbot.evaluation import masked_nll
from chatbot.model.seq2seq import Seq2Seq

PAD, BOS, EOS = 0, 2, 3


def tiny(attention: str = "general", encoder_layers: int = 1, decoder_layers: int = 1) -> Seq2Seq:
    config = ModelConfig(
        vocab_size=11,
        pad_id=PAD,
        embedding_size=5,
        hidden_size=7,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        dropout=0.0,
        attention=attention,
    )
    return Seq2Seq(config).eval()


@pytest.mark.parametrize("attention", ATTENTION_SCORES)
@pytest.mark.parametrize(("encoder_layers", "decoder_layers"), [(1, 1), (2, 3)])
def test_shapes(attention: str, encoder_layers: int, decoder_layers: int) -> None:
    model = tiny(attention, encoder_layers, decoder_layers)
    source = torch.tensor([[4, 5, 6, 7], [8, 9, PAD, PAD], [4, PAD, PAD, PAD]])
    encoded = model.encode(source)
    assert encoded.memory.shape == (3, 4, 7)
    assert encoded.hidden.shape == (decoder_layers, 3, 7)
    assert encoded.mask.tolist() == [[True] * 4, [True, True, False, False], [True, False, False, False]]
    logits, hidden, weights = model.decode(torch.tensor([[BOS, 5], [BOS, 6], [BOS, 7]]), encoded.hidden, encoded)
    assert logits.shape == (3, 2, 11)
    assert hidden.shape == (decoder_layers, 3, 7)
    assert weights.shape == (3, 2, 4)


def test_teacher_forcing_equals_step_by_step_decoding() -> None:
    model = tiny()
    source = torch.tensor([[4, 5, 6], [7, 8, PAD]])
    target_in = torch.tensor([[BOS, 9, 10, 4], [BOS, 5, 6, PAD]])
    whole = model(source, target_in)
    encoded = model.encode(source)
    hidden, steps = encoded.hidden, []
    for position in range(target_in.size(1)):
        logits, hidden, _ = model.decode(target_in[:, position : position + 1], hidden, encoded)
        steps.append(logits)
    torch.testing.assert_close(whole, torch.cat(steps, dim=1))


def test_overfits_four_pairs() -> None:
    model = tiny().train()
    source = torch.tensor([[4, 5], [6, 7], [8, 9], [10, 4]])
    target_out = torch.tensor([[9, 8, EOS], [7, 6, EOS], [5, 4, EOS], [4, 10, EOS]])
    target_in = torch.cat([torch.full((4, 1), BOS), target_out[:, :-1]], dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        total, pieces = masked_nll(model(source, target_in), target_out, PAD)
        (total / pieces).backward()
        optimizer.step()
    model.eval()
    assert torch.equal(model(source, target_in).argmax(-1), target_out)
