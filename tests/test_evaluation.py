"""Evaluation: perplexity arithmetic on a model whose probabilities we know exactly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from chatbot.config import ModelConfig, TokenizerConfig
from chatbot.corpora import load_corpus
from chatbot.evaluation import masked_nll, perplexity
from chatbot.model.seq2seq import Seq2Seq
from chatbot.text.batching import EncodedPair
from chatbot.text.tokenizer import Tokenizer


def test_masked_nll_ignores_padding() -> None:
    logits = torch.zeros(1, 3, 4)  # uniform over 4 pieces
    total, pieces = masked_nll(logits, torch.tensor([[1, 2, 0]]), pad_id=0)
    assert pieces == 2
    assert float(total) == pytest.approx(2 * math.log(4))


def test_uniform_model_has_vocabulary_sized_token_perplexity(sample_path: Path) -> None:
    texts = [turn.text for conversation in load_corpus(str(sample_path)) for turn in conversation.turns]
    tokenizer = Tokenizer.train(texts, TokenizerConfig(vocab_size=100))
    model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=0, embedding_size=4, hidden_size=4))
    with torch.no_grad():
        model.decoder.output.weight.zero_()
        model.decoder.output.bias.zero_()
    reply = tokenizer.encode("i like hiking and reading")
    result = perplexity(model, tokenizer, [EncodedPair((5, 6), tuple(reply))])
    assert result.pieces == len(reply) + 1
    assert result.words == 5 + 1
    assert result.token_perplexity == pytest.approx(tokenizer.vocab_size, rel=1e-4)
    # The same total NLL spread over words: exp(pieces * log V / words).
    expected = math.exp(result.pieces * math.log(tokenizer.vocab_size) / result.words)
    assert result.word_perplexity == pytest.approx(expected, rel=1e-4)
