"""bench/cross_encoder_judge.py: the rated dev candidates it learns from (never a judged prompt), the picks it is
measured by, the real encoder as a cross-encoder, and its prediction added to the shipped choice."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chatbot import generation
from chatbot.candidates import Choice
from chatbot.config import DecodeConfig
from chatbot.dialogue.types import Role, Turn
from chatbot.generation import ResponseGenerator
from chatbot.semantic import encoder_path
from tests.bench.scripts import load_script

judge = load_script("cross_encoder_judge.py")


def test_the_rated_dev_candidates_hold_every_rating_of_each_dev_reply_once() -> None:
    rows = judge.rated_dev_candidates()
    assert len(rows) >= 4658 and len({r["prompt"] for r in rows}) >= 315
    assert not any(r["prompt"].startswith(("first-", "follow-")) for r in rows)  # the judged prompts' ids
    assert all(1 <= r["rating"] <= 5 and r["ratings"] >= 1 and r["text"] == r["text"].lower() for r in rows)
    assert len({(r["prompt"], r["text"]) for r in rows}) == len(rows)
    # Those the sheets of 2026-12-06 (o, u) were judged by: the sheets up to dev sheet n.
    assert len(judge.rated_dev_candidates(until="2026-12-06n")) == 4658


def test_picks_are_the_ratings_of_what_the_prediction_ranks_first() -> None:
    rows = [
        {"prompt": "a", "rating": 2.0},
        {"prompt": "a", "rating": 4.0},
        {"prompt": "a", "rating": 3.0},
        {"prompt": "b", "rating": 5.0},
        {"prompt": "b", "rating": 1.0},
    ]
    found = judge.picks(rows, [0.1, 0.3, 0.2, -1.0, 1.0])
    assert found["prompts"] == 2
    assert found["pick"] == pytest.approx((4.0 + 1.0) / 2)
    assert found["best"] == pytest.approx((4.0 + 5.0) / 2)
    assert found["all"] == pytest.approx((3.0 + 3.0) / 2)
    assert found["spearman"] == pytest.approx((1.0 - 1.0) / 2)


def test_the_encoder_reads_a_conversation_and_a_reply_as_one_pair_and_learns() -> None:
    assert judge.context_text(["Hi", "hello! how are you?", "Good", "i failed my EXAM"]) == (
        "hello! how are you? | good | i failed my exam"
    )
    model = judge.CrossEncoder(encoder_path())
    rows = [
        {"prompt": "p", "turns": ["i failed my exam"], "text": "oh no, i'm sorry", "rating": 5.0},
        {"prompt": "p", "turns": ["i failed my exam"], "text": "pizza is great", "rating": 1.0},
    ]
    logged: list[str] = []
    judge.train(model, rows * 8, epochs=2, seed=0, log=logged.append)
    assert [line.split(":")[0] for line in logged] == ["epoch 0", "epoch 1"]
    first, second = model.predict(rows)
    assert first > second  # sixteen steps on the two are enough to tell them apart


def test_the_student_learns_and_is_saved_and_read_back() -> None:
    student = judge.Student.to_fit(1)  # as train --student fits it
    assert not any(p.requires_grad for p in student.network.embeddings.parameters())
    rows = [
        {"prompt": "p", "turns": ["i failed my exam"], "text": "oh no, i'm sorry", "rating": 5.0},
        {"prompt": "p", "turns": ["i failed my exam"], "text": "pizza is great", "rating": 1.0},
    ]
    judge.train(student, rows * 8, epochs=2, seed=0, lr=1e-4, log=lambda _: None)
    first, second = student.predict(rows)
    assert first > second


def test_a_saved_student_is_loaded_as_one(tmp_path: Path) -> None:
    student = judge.Student.to_fit(1)
    saved = tmp_path / "student.pt"
    saved.write_bytes(student.judge.to_bytes())
    loaded = judge.load(saved)
    assert isinstance(loaded, judge.Student)
    rows = [{"turns": ["hi", "hello! how are you?"], "text": text} for text in ("good, you?", "pizza")]
    assert loaded.predict(rows) == pytest.approx(student.predict(rows), abs=0.05)  # stored in fp16, read in bf16


class ByLength:
    """A stand-in judge: predicts a longer reply is better."""

    def predict(self, rows: list[dict[str, Any]]) -> list[float]:
        self.rows = rows
        return [float(len(row["text"])) for row in rows]


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """generation's scored and choices_for as the script patches them, restored afterwards."""
    monkeypatch.setattr(generation, "scored", generation.scored)
    monkeypatch.setattr(generation.ResponseGenerator, "choices_for", generation.ResponseGenerator.choices_for)
    yield


def test_the_prediction_is_weighed_into_the_shipped_choice(tiny_indexed_model_dir: Path, restored: None) -> None:
    config = DecodeConfig(candidates="both", retrieved=6, strategy="beam", beam_size=5, n_best=5)  # >= 2 candidates
    history = [Turn(Role.USER, "hi there"), Turn(Role.BOT, "hello!"), Turn(Role.USER, "do you have any pets?")]
    shipped = ResponseGenerator(tiny_indexed_model_dir, config).reply(history).text
    judge.patch(ByLength(), 0.0)
    assert ResponseGenerator(tiny_indexed_model_dir, config).reply(history).text == shipped
    stand_in = ByLength()
    judge.patch(stand_in, float("inf"))
    alone = ResponseGenerator(tiny_indexed_model_dir, config).reply(history).text
    assert len(stand_in.rows) > 1  # a choice among several, not a lone candidate
    assert alone == max((row["text"] for row in stand_in.rows), key=len)
    assert {tuple(row["turns"]) for row in stand_in.rows} == {("hi there", "hello!", "do you have any pets?")}


def test_the_prediction_may_read_only_the_shipped_best(tiny_indexed_model_dir: Path, restored: None) -> None:
    config = DecodeConfig(candidates="both", retrieved=6, strategy="beam", beam_size=5, n_best=5)  # >= 3 candidates
    history = [Turn(Role.USER, "do you have any pets?")]
    shipped = ResponseGenerator(tiny_indexed_model_dir, config).reply(history).text
    stand_in = ByLength()
    judge.patch(stand_in, float("inf"), top=1)  # the shipped score's best alone: nothing to choose among
    assert ResponseGenerator(tiny_indexed_model_dir, config).reply(history).text == shipped
    assert len(stand_in.rows) == 1
    judge.patch(stand_in, float("inf"), top=3)
    three = ResponseGenerator(tiny_indexed_model_dir, config).reply(history).text
    assert len(stand_in.rows) == 3 and shipped in {row["text"] for row in stand_in.rows}
    assert three == max((row["text"] for row in stand_in.rows), key=len)


def test_a_margin_leaves_a_sure_choice_unread(tiny_indexed_model_dir: Path, restored: None) -> None:
    config = DecodeConfig(candidates="both", retrieved=6, strategy="beam", beam_size=5, n_best=5)  # >= 3 candidates
    history = [Turn(Role.USER, "do you have any pets?")]
    shipped = ResponseGenerator(tiny_indexed_model_dir, config).reply(history).text
    unsure = ByLength()
    judge.patch(unsure, float("inf"), top=3, margin=math.inf)  # inf: every context read, as without one
    assert ResponseGenerator(tiny_indexed_model_dir, config).reply(history).text == max(
        (row["text"] for row in unsure.rows), key=len
    )
    sure = ByLength()
    judge.patch(sure, float("inf"), top=3, margin=-1.0)  # no lead is less than -1: nothing read, the shipped choice
    assert ResponseGenerator(tiny_indexed_model_dir, config).reply(history).text == shipped
    assert not hasattr(sure, "rows")  # the judge was not asked at all


def test_lead_is_how_far_the_best_score_leads_the_next() -> None:
    def choice(score: float) -> Choice:
        return Choice([1], "generated", score, 0.5)

    assert judge.lead([choice(-1.0), choice(-3.5), choice(-2.0)]) == pytest.approx(1.0)
    assert judge.lead([choice(-1.0)]) == math.inf


def test_the_student_may_read_fewer_context_pieces() -> None:
    assert judge.Student.to_fit(1, context_pieces=48).judge.config.context_pieces == 48


def test_pool_picks_rate_each_choice_among_the_shipped_candidates(tiny_indexed_model_dir: Path) -> None:
    config = DecodeConfig(candidates="both", retrieved=6, strategy="beam", beam_size=5, n_best=5)  # >= 3 candidates
    generator = ResponseGenerator(tiny_indexed_model_dir, config)
    prompts = [judge.judged.Prompt("001", "p-1", "first", ("do you have any pets?",))]
    prompts.append(judge.judged.Prompt("002", "p-2", "follow-up", ("hi there", "hello!", "what do you do for fun?")))
    rated = {}
    for prompt in prompts:
        _, choices = judge.scored_candidates(generator, prompt)
        assert len(choices) >= 3
        texts = [generator.load().tokenizer.decode_clean(c.tokens) for c in choices]
        rated |= {(prompt.id, judge.judged.normalize(text)): float(1 + i % 5) for i, text in enumerate(texts)}
    stand_in = ByLength()
    found = judge.pool_picks(generator, stand_in, prompts, rated)
    assert set(found) == {"all", "first", "follow-up"} and found["all"]["prompts"] == 2
    follow_up = found["follow-up"]
    shipped = generator.reply(prompts[1].history()).text
    assert follow_up["shipped"] == rated[("p-2", judge.judged.normalize(shipped))]
    longest = max((row["text"] for row in stand_in.rows), key=len)  # the stand-in read the last prompt's candidates
    assert follow_up["alone"] == rated[("p-2", judge.judged.normalize(longest))]
    assert follow_up["best"] == max(rating for (prompt, _), rating in rated.items() if prompt == "p-2")
    with pytest.raises(SystemExit, match="p-1: the pool has no rating"):
        judge.pool_picks(generator, stand_in, prompts, {})


def test_picks_of_weigh_the_prediction_in_among_all_or_the_shipped_best() -> None:
    shipped, predicted, ratings = [3.0, 2.0, 1.0, 0.0], [0.0, 0.1, 0.5, 2.0], [2.0, 3.0, 4.0, 5.0]
    found = judge.picks_of(shipped, predicted, ratings)
    assert found["shipped"] == 2.0  # the highest shipped score
    assert found["weight 3"] == 5.0  # 0 + 3 * 2.0 beats 3 + 0, 2 + 0.3 and 1 + 1.5
    assert found["alone"] == 5.0
    assert found["weight 3, top 3"] == 2.0  # among the first three: 3.0, 2.3, 2.5
    assert found["alone, top 3"] == 4.0
    assert found["best"] == 5.0


def test_distillation_rows_are_each_pools_best_by_the_shipped_score_and_agreement_reads_the_best_three() -> None:
    import torch

    pools = [
        {
            "id": "a",
            "turns": ["hi"],
            "texts": ["x", "y", "z", "w"],
            "parts": torch.tensor([[1.0], [3.0], [2.0], [0.0]]),
        },
        {"id": "b", "turns": ["yo"], "texts": ["p", "q"], "parts": torch.tensor([[0.5], [0.75]])},
    ]
    rows = judge.best_rows(pools, top=3)
    assert [(r["prompt"], r["text"], r["shipped"]) for r in rows] == [
        ("a", "y", 3.0),
        ("a", "z", 2.0),
        ("a", "x", 1.0),
        ("b", "q", 0.75),
        ("b", "p", 0.5),
    ]
    # Pool a: the teacher's pick (3 + 0, 2 + 3 * 1, 1 + 0) is z, the student's (3 + 0, 2 + 0, 1 + 0) the shipped y;
    # pool b: both keep the shipped q.
    found = judge.agreement(rows, [0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0])
    assert found == {"pools": 2, "agreement": 0.5, "shipped": 0.5}
