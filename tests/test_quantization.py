"""int8 dynamic quantization: the shipped model's perplexity stays within half a percent of fp32, and every
strategy still replies through `chatbot chat --quantize`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from chatbot.cli import cli, default_model_dir
from chatbot.evaluation import held_out_pairs, perplexity
from chatbot.quantization import quantize
from chatbot.training import checkpoint


def test_int8_perplexity_is_within_half_a_percent_of_fp32() -> None:
    # 500 of the model's own test pairs: on the few pairs of the sample logs, chance alone moves it by half a percent.
    bundle = checkpoint.load(default_model_dir())
    pairs = held_out_pairs(bundle, ["chitchat"], "test", 500)
    fp32 = perplexity(bundle.model, bundle.tokenizer, pairs).word_perplexity
    int8_model = quantize(bundle.model)
    assert isinstance(int8_model.decoder.rnn, torch.ao.nn.quantized.dynamic.GRU)
    assert isinstance(int8_model.encoder.paired_layers[0], torch.ao.nn.quantized.dynamic.GRU)  # directions paired
    int8 = perplexity(int8_model, bundle.tokenizer, pairs).word_perplexity
    assert int8 == pytest.approx(fp32, rel=0.005)
    assert isinstance(bundle.model.decoder.rnn, torch.nn.GRU)  # the fp32 original is untouched
    assert bundle.model.encoder.backward_layers and not bundle.model.encoder.paired_layers


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_chat_with_quantized_weights(tmp_path: Path, strategy: str) -> None:
    args = ["chat", "--db", f"sqlite:///{tmp_path / 'chat.db'}", "--quantize", "--strategy", strategy]
    result = CliRunner().invoke(cli, args, input="hello\nhow are you?\n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2
