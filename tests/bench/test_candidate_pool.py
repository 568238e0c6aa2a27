"""bench/candidate_pool.py: a blind sheet of every retrieved candidate with its features kept apart, and the fit
that says what each scoring would have sent, against ratings filled in by hand."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

from tests.bench.scripts import load_script

pools = load_script("candidate_pool.py")
PROMPTS = [
    {"id": "pets", "kind": "first", "turns": ["so do you have any pets?"]},
    {"id": "food", "kind": "follow-up", "turns": ["hi", "hello!", "what's your favourite food?"]},
]


def run(*arguments: str) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert pools.main(list(arguments)) == 0
    return printed.getvalue()


@pytest.fixture(scope="module")
def sheet(tmp_path_factory: pytest.TempPathFactory, tiny_indexed_model_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("pool")
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS), encoding="utf-8")
    run("sheet", "--prompts", str(prompts), "--model", str(tiny_indexed_model_dir), "--out", str(root / "out"))
    return root / "out"


def features(sheet: Path) -> list[dict[str, object]]:
    lines = (sheet / "features.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_every_candidate_is_on_the_sheet_once_and_its_features_are_kept_apart(sheet: Path) -> None:
    rows = features(sheet)
    text = (sheet / "sheet.md").read_text(encoding="utf-8")
    assert {row["prompt"] for row in rows} == {"pets", "food"}
    for row in rows:
        assert f"- {row['id']}: {row['text']}\n" in text
        assert isinstance(row["log_prob"], float) and row["log_prob"] < 0 and row["pieces"] >= 2
    assert "log_prob" not in text and "relevance" not in text  # the rater sees replies only
    pets = {row["text"] for row in rows if row["prompt"] == "pets"}
    assert "yes, a cat named pepper" in pets
    with (sheet / "ratings.csv").open(encoding="utf-8") as handle:
        assert [r["id"] for r in csv.DictReader(handle)] == [row["id"] for row in rows]


def test_fit_reports_the_ceiling_and_what_each_scoring_picks(sheet: Path, tmp_path: Path) -> None:
    rows = features(sheet)
    best = {"yes, a cat named pepper", "pizza, definitely"}
    filled = ["id,score,on_topic,fluent"] + [f"{r['id']},{5 if r['text'] in best else 1},yes,yes" for r in rows]
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("\n".join(filled) + "\n", encoding="utf-8")
    printed = run("fit", str(sheet), "--ratings", str(ratings), "--top", "3")
    all_prompts = printed.split("### all")[1].split("###")[0]
    assert f"2 prompts, {len(rows)} candidates" in all_prompts
    assert "ceiling (best candidate) 5.00" in all_prompts
    scorings = [line for line in all_prompts.splitlines() if line.startswith("  ")]
    assert len(scorings) == 3 and scorings[0].startswith("  5.00")  # some scoring picks both right replies
    mean = sum(5 if r["text"] in best else 1 for r in rows) / len(rows)
    assert f"all candidates {mean:.2f}" in all_prompts
    # Tuned on one prompt and rated on the other: at most what the best scoring of both gets.
    held_out = float(all_prompts.split("rated on the other half: ")[1].split()[0])
    assert 1.0 <= held_out <= 5.0


def test_held_out_tuning_rates_each_half_s_choice_on_the_other() -> None:
    import numpy as np

    # Scoring 0 is best on the even prompts (0, 2), scoring 1 on the odd ones (1, 3).
    picks = np.array([[5.0, 1.0, 5.0, 1.0], [1.0, 4.0, 2.0, 4.0]])
    # Even-tuned (scoring 0) rates 1 on the odd prompts; odd-tuned (scoring 1) rates 1.5 on the even ones.
    assert pools._held_out(picks) == pytest.approx((1.0 + 1.5) / 2)


def test_a_pool_s_pick_follows_the_documented_score() -> None:
    import numpy as np

    pool = pools.Pool(
        "first",
        rating=np.array([1.0, 5.0]),
        log_prob=np.array([-2.0, -8.0]),
        context_free=np.array([-2.5, -12.0]),
        pieces=np.array([3.0, 5.0]),
        relevance=np.array([1.0, 0.5]),
    )
    plain = {"mmi_weight": 0.0, "length_penalty": 0.0, "retrieval_weight": 0.0}
    assert pool.pick(plain) == 1.0  # the likelier reply
    assert pool.pick(plain | {"mmi_weight": 1.0}) == 5.0  # -8 + 12 beats -2 + 2.5
    assert pool.pick(plain | {"mmi_weight": 1.0, "retrieval_weight": 8.0}) == 1.0  # 0.5 + 8 beats 4 + 4
