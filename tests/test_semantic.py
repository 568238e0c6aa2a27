"""Semantic similarity: the real all-MiniLM-L6-v2 encoder (checked by SHA-256, never downloaded) puts a reply near
the message it answers, and a reply index keeps its vectors on a few principal axes as int8."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from chatbot.errors import ModelError
from chatbot.semantic import DIMENSIONS, WIDTH, Projection, SentenceEncoder, encoder_path, from_int8, to_int8


@pytest.fixture(scope="module")
def encoder() -> SentenceEncoder:
    return SentenceEncoder(encoder_path())


def test_texts_become_unit_vectors_and_a_fitting_reply_is_closer(encoder: SentenceEncoder) -> None:
    message, answer, unrelated = "i just adopted a puppy!", "aww what breed is your new dog?", "my tax forms are due"
    vectors = encoder.encode([message, answer, unrelated])
    assert vectors.shape == (3, WIDTH) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert encoder.encode([]).shape == (0, WIDTH)


def test_a_text_s_vector_does_not_depend_on_its_batch(encoder: SentenceEncoder) -> None:
    alone = encoder.encode(["how was your day?"])
    padded = encoder.encode(["how was your day?", "a much longer text than the first, so that it gets padded"])
    assert float(alone[0] @ padded[0]) > 0.999  # padding is masked out (bf16 rounding aside)


@pytest.mark.reliability
def test_weights_that_are_not_the_expected_ones_are_refused(tmp_path: Path) -> None:
    shutil.copytree(encoder_path(), tmp_path / "encoder", ignore=shutil.ignore_patterns("model.safetensors"))
    (tmp_path / "encoder" / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(ModelError, match="SHA-256 differs"):
        SentenceEncoder(tmp_path / "encoder").encode(["hello"])
    with pytest.raises(ModelError, match="cannot read"):
        SentenceEncoder(tmp_path / "missing").load()


def test_the_projection_keeps_the_principal_axes_and_unit_length() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, WIDTH)).astype(np.float32)
    vectors[:, 0] *= 10  # one direction dominates: it must be the first axis
    projection = Projection.fit(vectors)
    assert projection.axes.shape == (DIMENSIONS, WIDTH)
    assert abs(projection.axes[0, 0]) > 0.99
    projected = projection.apply(vectors)
    assert projected.shape == (200, DIMENSIONS)
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-5)


def test_few_vectors_leave_the_other_axes_empty_and_the_mean_maps_to_zero() -> None:
    vectors = np.eye(WIDTH, dtype=np.float32)[:3]
    projection = Projection.fit(vectors)
    assert np.count_nonzero(np.abs(projection.axes).sum(axis=1)) <= 3
    assert not projection.apply(projection.mean[None, :]).any()  # nothing left: zero, not NaN
    assert not Projection.fit(np.zeros((0, WIDTH), dtype=np.float32)).axes.any()


def test_int8_storage_keeps_the_direction() -> None:
    unit = Projection.fit(np.random.default_rng(1).normal(size=(50, WIDTH)).astype(np.float32)).apply(
        np.random.default_rng(2).normal(size=(10, WIDTH)).astype(np.float32)
    )
    stored = to_int8(unit)
    assert stored.dtype == np.int8
    assert np.all(np.sum(from_int8(stored) * unit, axis=1) > 0.999)
    assert not from_int8(np.zeros((1, DIMENSIONS), dtype=np.int8)).any()


def test_the_traced_network_gives_the_untraced_vectors_for_any_batch(encoder: SentenceEncoder) -> None:
    from chatbot import semantic

    encoder.encode(["traced on this one text of a middling length"])  # the trace is made on the first batch
    tokenizer, network = semantic._read(encoder_path())
    untraced = semantic._for_inference(network)
    texts = ["hi", "what do you do for a living?", "my cat knocked my coffee all over my laptop this morning, ugh"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        states = untraced(batch["input_ids"], batch["attention_mask"])[0].float()
    weights = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((states * weights).sum(1) / weights.sum(1), dim=-1).numpy()
    assert np.all(np.sum(encoder.encode(texts) * expected, axis=1) > 0.999)
