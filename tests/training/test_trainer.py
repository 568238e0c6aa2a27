"""Trainer and pipeline: loss falls, limits stop training, the best weights are kept, metrics are written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from chatbot.config import ContextConfig, DataConfig, ModelConfig, TokenizerConfig, TrainConfig
from chatbot.corpora import load_corpus
from chatbot.errors import ChatbotError, DataError
from chatbot.model.seq2seq import Seq2Seq
from chatbot.text.batching import Batch, EncodedPair, bucketed_batches, encode_pair
from chatbot.text.pairs import split_pairs
from chatbot.text.tokenizer import Tokenizer
from chatbot.training.pipeline import train_model_dir
from chatbot.training.run_state import LossWindow
from chatbot.training.trainer import Trainer, autocast_dtype

from ..conftest import TINY_SHAPE, TINY_TOKENIZER


def batches_of(tokenizer: Tokenizer, pairs: list[EncodedPair]) -> list[Batch]:
    """Fixed-order batches of 8, as the trainer builds its validation batches."""
    return bucketed_batches(pairs, 8, tokenizer, rng=None)


def train_tiny(sources: list[str], out: Path, train: TrainConfig, report: Callable[[str], None]) -> dict[str, Any]:
    """The pipeline at test size: the tiny shape and tokenizer, default context and cleaning."""
    return train_model_dir(sources, out, TINY_SHAPE, TINY_TOKENIZER, ContextConfig(), DataConfig(), train, report)


def encoded_sample(sample_path: Path):  # type: ignore[no-untyped-def]
    pairs = [p for ps in split_pairs(load_corpus(str(sample_path)), 3).values() for p in ps]
    tokenizer = Tokenizer.train(
        [p.response for p in pairs] + [p.context for p in pairs], TokenizerConfig(vocab_size=150)
    )
    return tokenizer, [encode_pair(p, tokenizer, ContextConfig()) for p in pairs]


def test_loss_falls_and_max_steps_stops(sample_path: Path) -> None:
    tokenizer, pairs = encoded_sample(sample_path)
    model = Seq2Seq(
        ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=0, embedding_size=16, hidden_size=16, dropout=0.0)
    )
    trainer = Trainer(
        model,
        tokenizer,
        TrainConfig(epochs=100, batch_size=8, learning_rate=1e-2, max_steps=150, precision="fp32"),
    )
    summary = trainer.fit(pairs, pairs[:16])
    assert summary.steps == 150
    assert summary.stopped_by == "max_steps"
    losses = [entry["valid_loss"] for entry in summary.history]
    assert losses[-1] < losses[0] - 1.0
    assert summary.best_valid_loss == pytest.approx(min(losses), abs=1e-3)
    assert trainer.validate(batches_of(tokenizer, pairs[:16])) == pytest.approx(summary.best_valid_loss, abs=1e-3)


def test_training_is_reproducible_with_a_seed(sample_path: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=2, batch_size=8, precision="fp32", seed=7)
    for name in ("a", "b"):
        train_tiny([str(sample_path)], tmp_path / name, config, print)
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()


def test_pipeline_writes_metrics_and_reports_statistics(sample_path: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    config = TrainConfig(epochs=1, batch_size=8, precision="fp32")
    train_tiny([str(sample_path)], tmp_path / "m", config, lines.append)
    assert lines[0].startswith("corpus: train ") and "conversations" in lines[0]
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["training"]["steps"] > 0
    assert metrics["test"]["word_perplexity"] > 1


def test_bad_data_fails_before_anything_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"turns": ["a", "b"]}\n{broken\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2"):
        train_tiny([str(bad)], tmp_path / "out", TrainConfig(), print)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_data_without_pairs_is_an_error(tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.jsonl"
    lonely.write_text('{"turns": ["only one turn"]}\n')
    with pytest.raises(ChatbotError, match="no training pairs"):
        train_tiny([str(lonely)], tmp_path / "out", TrainConfig(), print)


def test_autocast_choice() -> None:
    import torch

    assert autocast_dtype("fp32", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    assert autocast_dtype("fp16", torch.device("cpu")) is torch.float16


def test_device_resolution() -> None:
    import torch

    from chatbot.training.trainer import resolve_device

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_patience_stops_a_run_that_no_longer_improves(sample_path: Path) -> None:
    tokenizer, pairs = encoded_sample(sample_path)
    model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=0, embedding_size=8, hidden_size=8))
    # A learning rate of 0 never changes the weights, so every validation after the first fails to improve.
    config = TrainConfig(epochs=50, batch_size=8, learning_rate=0.0, valid_every=1, patience=3, precision="fp32")
    summary = Trainer(model, tokenizer, config).fit(pairs, pairs[:8])
    assert summary.stopped_by == "early_stopping"
    assert summary.steps == 4  # one first validation, then three without improvement


def test_label_smoothing_raises_the_training_loss_but_not_the_validation_loss(sample_path: Path) -> None:
    tokenizer, pairs = encoded_sample(sample_path)
    batches = batches_of(tokenizer, pairs[:8])
    losses = {}
    for smoothing in (0.0, 0.2):
        torch.manual_seed(0)
        model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=0, embedding_size=8, hidden_size=8))
        config = TrainConfig(learning_rate=0.0, label_smoothing=smoothing, precision="fp32")
        trainer = Trainer(model, tokenizer, config)
        losses[smoothing] = (trainer.step(batches[0])[0], trainer.validate(batches))
    assert losses[0.2][0] != pytest.approx(losses[0.0][0])
    assert losses[0.2][1] == pytest.approx(losses[0.0][1])


def test_history_records_the_scheduled_learning_rate(sample_path: Path) -> None:
    tokenizer, pairs = encoded_sample(sample_path)
    model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=0, embedding_size=8, hidden_size=8))
    config = TrainConfig(epochs=1, batch_size=8, warmup_steps=4, valid_every=2, max_steps=4, precision="fp32")
    summary = Trainer(model, tokenizer, config).fit(pairs, pairs[:8])
    assert [entry["learning_rate"] for entry in summary.history] == pytest.approx([6.25e-4, 1e-3])


def test_validation_word_perplexity_matches_the_evaluation_module(sample_path: Path) -> None:
    from chatbot.evaluation import perplexity

    tokenizer, pairs = encoded_sample(sample_path)
    model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=0, embedding_size=8, hidden_size=8))
    config = TrainConfig(epochs=1, batch_size=8, max_steps=3, precision="fp32")
    summary = Trainer(model, tokenizer, config).fit(pairs, pairs[:12])
    measured = perplexity(model, tokenizer, pairs[:12], batch_size=8)
    assert summary.history[-1]["valid_word_ppl"] == round(measured.word_perplexity, 2)
    assert summary.history[-1]["valid_token_ppl"] == round(measured.token_perplexity, 2)


def test_scheduled_sampling_trains_in_batches_and_records_the_ratio(sample_path: Path) -> None:
    tokenizer, pairs = encoded_sample(sample_path)
    model = Seq2Seq(
        ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=0, embedding_size=16, hidden_size=16, dropout=0.0)
    )
    config = TrainConfig(
        epochs=100,
        batch_size=8,
        learning_rate=1e-2,
        max_steps=120,
        valid_every=30,
        precision="fp32",
        scheduled_sampling="linear",
        sampling_decay_steps=60,
        min_teacher_forcing=0.5,
    )
    summary = Trainer(model, tokenizer, config).fit(pairs, pairs[:16])
    ratios = [(entry["step"], entry["teacher_forcing"]) for entry in summary.history]
    assert all(ratio == round(max(0.5, 1 - 0.5 * step / 60), 4) for step, ratio in ratios)
    assert ratios[-1] == (120, 0.5)
    losses = [entry["valid_loss"] for entry in summary.history]
    assert losses[-1] < losses[0] - 0.5


def test_fp16_trains_with_loss_scaling(sample_path: Path) -> None:
    tokenizer, pairs = encoded_sample(sample_path)
    model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=0, embedding_size=8, hidden_size=8))
    trainer = Trainer(model, tokenizer, TrainConfig(precision="fp16", learning_rate=1e-2))
    assert trainer.dtype is torch.float16 and trainer.scaler.is_enabled()
    before = [p.detach().clone() for p in model.parameters()]
    batch = batches_of(tokenizer, pairs[:8])[0]
    losses = [trainer.step(batch)[0] for _ in range(5)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(old, new) for old, new in zip(before, model.parameters(), strict=True))
    assert trainer.scaler.get_scale() > 1.0  # the scaler scales the loss up so fp16 gradients do not underflow


def test_bf16_and_fp32_need_no_loss_scaling(sample_path: Path) -> None:
    tokenizer, _ = encoded_sample(sample_path)
    model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=0, embedding_size=8, hidden_size=8))
    for precision in ("fp32", "bf16"):
        assert not Trainer(model, tokenizer, TrainConfig(precision=precision)).scaler.is_enabled()


def test_progress_bar_shows_loss_perplexity_validation_and_speed(sample_path: Path) -> None:
    tokenizer, pairs = encoded_sample(sample_path)
    model = Seq2Seq(ModelConfig(vocab_size=tokenizer.vocab_size, pad_id=0, embedding_size=8, hidden_size=8))
    trainer = Trainer(model, tokenizer, TrainConfig(epochs=1, batch_size=8, max_steps=2, precision="fp32"))
    trainer.fit(pairs, pairs[:8])
    trainer.progress.window = LossWindow(6.0, 3)  # two nats per piece since the last validation
    fields = trainer._progress_fields(1234.4)
    assert fields["loss"] == "2.000" and fields["ppl"] == "7.4" and fields["tok/s"] == "1234"
    assert fields["valid_word_ppl"] == f"{trainer.summary.history[-1]['valid_word_ppl']:.1f}"
