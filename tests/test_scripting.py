"""TorchScript export: the scripted beam search replies exactly as the eager model does, for every cell, attention
and direction, and `chatbot export-model` writes a file that runs in a Python where `chatbot` cannot be imported."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from chatbot.cli import cli
from chatbot.config import DecodeConfig, ModelConfig, TokenizerConfig
from chatbot.model.seq2seq import Seq2Seq
from chatbot.scripting import script
from chatbot.search import generate
from chatbot.text.tokenizer import Tokenizer
from chatbot.training import checkpoint

BOS, EOS = 2, 3
DECODINGS = [
    DecodeConfig(max_length=8),
    DecodeConfig(strategy="beam", beam_size=4, n_best=3, max_length=8, block_ngram=2, block_context_ngram=2),
    DecodeConfig(strategy="beam", beam_size=3, max_length=6, min_length=3, length_penalty=0.0),
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    texts = ["hello there", "how are you", "fine thanks"] * 20
    return Tokenizer.train(texts, TokenizerConfig(vocab_size=30))


@pytest.mark.parametrize(
    ("cell", "attention", "bidirectional"),
    list(itertools.product(["gru", "lstm"], ["general", "additive"], [True, False])),
)
def test_scripted_search_replies_exactly_as_the_eager_model(
    tokenizer: Tokenizer, cell: str, attention: str, bidirectional: bool
) -> None:
    torch.manual_seed(0)
    options = {"cell": cell, "attention": attention, "bidirectional": bidirectional, "dropout": 0.0}
    config = ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=0, embedding_size=8, hidden_size=12, **options)  # type: ignore[arg-type]
    model = Seq2Seq(config).eval()
    for decode in DECODINGS:
        scripted = script(model, decode, tokenizer, 64)
        for source in ([4, 5, 6, 7, 5, 6], [9, 8]):
            replies, scores = scripted(torch.tensor([source]))
            expected = generate(model, torch.tensor([source]), BOS, EOS, decode)[0]
            assert replies == [h.tokens for h in expected]
            assert scores == pytest.approx([h.score for h in expected], abs=1e-5)


def test_export_model_runs_without_the_package(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bot.pt"
    args = ["export-model", "--model", str(tiny_model_dir), "--out", str(out), "--strategy", "beam", "--n-best", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["decode"]["strategy"] == "beam"
    bundle = checkpoint.load(tiny_model_dir)
    source = bundle.tokenizer.encode("<usr> do you have any pets?")
    program = (
        "import sys, json; sys.modules['chatbot'] = None\n"  # any import of the package now fails
        "import torch, sentencepiece\n"
        f"bot = torch.jit.load({str(out)!r})\n"
        f"replies, scores = bot(torch.tensor([{source!r}]))\n"
        "pieces = sentencepiece.SentencePieceProcessor(model_proto=bytes(bot.tokenizer_model.tolist()))\n"
        "print(json.dumps([replies, pieces.decode(replies[0]), bot.max_source_tokens]))\n"
    )
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    replies, text, max_source = json.loads(run.stdout)
    decode = DecodeConfig(strategy="beam", n_best=2)
    expected = generate(bundle.model, torch.tensor([source]), BOS, EOS, decode)[0]
    assert replies == [h.tokens for h in expected] and len(replies) == 2
    assert text == "yes, a cat named pepper" and max_source == bundle.context.max_source_tokens
