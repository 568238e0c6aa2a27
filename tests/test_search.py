"""Greedy search: stops each row at end-of-sequence, respects min and max length, and decodes batches row-wise."""

from __future__ import annotations

import torch

from chatbot.config import DecodeConfig, ModelConfig
from chatbot.model.seq2seq import Seq2Seq
from chatbot.search import greedy_search

PAD, BOS, EOS = 0, 2, 3


def biased_model(favourite: int) -> Seq2Seq:
    """A model whose output layer always prefers ``favourite`` most and EOS second."""
    model = Seq2Seq(ModelConfig(vocab_size=9, pad_id=PAD, embedding_size=4, hidden_size=4, dropout=0.0)).eval()
    with torch.no_grad():
        model.decoder.output.weight.zero_()
        model.decoder.output.bias.fill_(-10.0)
        model.decoder.output.bias[favourite] = 5.0
        model.decoder.output.bias[EOS] = 4.0
    return model


def test_eos_first_gives_an_empty_reply_only_without_min_length() -> None:
    model = biased_model(favourite=EOS)
    source = torch.tensor([[4, 5, 6]])
    assert greedy_search(model, source, BOS, EOS, DecodeConfig(max_length=5, min_length=0)) == [[]]
    replies = greedy_search(model, source, BOS, EOS, DecodeConfig(max_length=5, min_length=2))
    assert len(replies[0]) == 2 and EOS not in replies[0]


def test_max_length_caps_a_reply_that_never_ends() -> None:
    replies = greedy_search(biased_model(favourite=7), torch.tensor([[4], [5]]), BOS, EOS, DecodeConfig(max_length=6))
    assert replies == [[7] * 6, [7] * 6]


def test_batched_search_matches_one_row_at_a_time() -> None:
    torch.manual_seed(3)
    model = Seq2Seq(ModelConfig(vocab_size=9, pad_id=PAD, embedding_size=4, hidden_size=6, dropout=0.0)).eval()
    rows = [[4, 5, 6], [7, 8, PAD], [6, PAD, PAD]]
    config = DecodeConfig(max_length=8)
    batched = greedy_search(model, torch.tensor(rows), BOS, EOS, config)
    single = [greedy_search(model, torch.tensor([[t for t in row if t != PAD]]), BOS, EOS, config)[0] for row in rows]
    assert batched == single  # padding and finished neighbours never change a row's reply
