"""Semantic similarity: the real all-MiniLM-L6-v2 encoder (checked by SHA-256, never downloaded) puts a reply near
the message it answers, and a reply index keeps its vectors on a few principal axes as int8."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from chatbot.errors import ModelError
from chatbot.semantic import (
    DIMENSIONS,
    WIDTH,
    PieceVectors,
    Projection,
    SentenceEncoder,
    encoder_path,
    from_int8,
    to_int8,
)


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
    untraced = semantic.for_inference(network)
    texts = ["hi", "what do you do for a living?", "my cat knocked my coffee all over my laptop this morning, ugh"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        states = untraced(batch["input_ids"], batch["attention_mask"])[0].float()
    weights = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((states * weights).sum(1) / weights.sum(1), dim=-1).numpy()
    assert np.all(np.sum(encoder.encode(texts) * expected, axis=1) > 0.999)


def test_the_student_learns_a_linear_encoder_and_reads_any_text_as_a_unit_vector() -> None:
    rng = np.random.default_rng(3)
    vocab_size, truth = 40, rng.normal(size=(40, DIMENSIONS))
    texts = [list(rng.integers(0, vocab_size, size=rng.integers(1, 8))) for _ in range(2000)]
    fitted = PieceVectors.fit(texts, np.zeros((len(texts), DIMENSIONS)), vocab_size)
    # Targets that are exactly weighted means of a table: the fitted table's means point the same way.
    shares = [fitted.weights[text] / fitted.weights[text].sum() for text in texts]
    targets = np.stack([share @ truth[text] for share, text in zip(shares, texts, strict=True)])
    student = PieceVectors.fit(texts, targets, vocab_size)
    read = student.encode(texts[:50])
    assert read.shape == (50, DIMENSIONS) and read.dtype == np.float32
    unit_targets = targets[:50] / np.linalg.norm(targets[:50], axis=1, keepdims=True)
    assert np.all(np.sum(read * unit_targets, axis=1) > 0.99)
    common, rare = np.argsort(fitted.weights)[[0, -1]]  # a piece in more texts weighs less
    assert fitted.weights[common] < fitted.weights[rare]
    assert not student.encode([[]]).any()  # a text of no piece: zero, not NaN
    assert student.encode([]).shape == (0, DIMENSIONS)


def test_the_student_is_stored_small_and_checked_against_the_tokenizer_s_size() -> None:
    rng = np.random.default_rng(4)
    texts = [list(rng.integers(0, 30, size=5)) for _ in range(300)]
    student = PieceVectors.fit(texts, rng.normal(size=(300, DIMENSIONS)), 30)
    data = student.to_bytes()
    assert len(data) == 30 * (4 + 2 * DIMENSIONS)
    again = PieceVectors.from_bytes(data, 30)
    assert np.all(np.sum(again.encode(texts) * student.encode(texts), axis=1) > 0.999)  # float16 keeps them
    with pytest.raises(ValueError, match="not for a tokenizer of 31 pieces"):
        PieceVectors.from_bytes(data, 31)


def test_the_student_of_the_real_encoder_reads_a_message_much_as_the_encoder_does(encoder: SentenceEncoder) -> None:
    replies = [
        "i have a dog and two cats",
        "my puppy chews everything",
        "i love cooking pasta",
        "pizza is my favourite food",
        "i work as a nurse",
        "my job is at a hospital",
        "it rained all day here",
        "the weather has been sunny",
    ] * 3
    words = sorted({word for reply in replies for word in reply.split()})
    as_ids = [[words.index(word) for word in reply.split()] for reply in replies]
    projection = Projection.fit(encoder.encode(replies))
    student = PieceVectors.fit(as_ids, projection.apply(encoder.encode(replies)), len(words))
    pets, food = student.encode([[words.index("dog")], [words.index("pasta")]])
    replies_read = projection.apply(encoder.encode(["my puppy chews everything", "i love cooking pasta"]))
    assert pets @ replies_read[0] > pets @ replies_read[1] and food @ replies_read[1] > food @ replies_read[0]
