"""bench/judged.py: a blind sheet of two tiny models' and the TF-IDF baseline's replies, its key, its parts and its
seeded shuffle; the scorer's figures against ones worked out by hand; and each bad input a one-line error, exit 2."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from chatbot.reply_quality import is_pleasantry
from tests.bench.scripts import load_script

PROMPTS = [
    {"id": "first-a", "kind": "first", "turns": ["Hi there"]},
    {"id": "follow-a", "kind": "follow-up", "turns": ["good morning", "morning! did you sleep well?", "not really"]},
    {"id": "first-b", "kind": "first", "turns": ["what do you do for fun?"]},
    {"id": "follow-b", "kind": "follow-up", "turns": ["Welcome  back!", "thanks", "how was your week?", "busy"]},
]
NAMES = ("alphamodel", "betamodel", "tfidfbase")


judged = load_script("judged.py")


def write_prompts(path: Path, prompts: list[dict[str, object]] = PROMPTS) -> Path:
    path.write_text("".join(json.dumps(prompt) + "\n" for prompt in prompts), encoding="utf-8")
    return path


def make_sheet(out: Path, prompts: Path, systems: list[str], *extra: str) -> str:
    """Run `sheet` and return what it printed; it must succeed."""
    options = [option for system in systems for option in ("--system", system)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert judged.main(["sheet", "--prompts", str(prompts), "--out", str(out), *options, *extra]) == 0
    return printed.getvalue()


def three_systems(model: Path, sample: Path) -> list[str]:
    return [
        f"alphamodel=model={model},quantized=false",
        f"betamodel=model={model},strategy=beam,beam_size=3",
        f"tfidfbase=baseline=tfidf,data={sample}",
    ]


@pytest.fixture(scope="module")
def sheet(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, sample_path: Path) -> tuple[Path, str]:
    """A two-part sheet of the three systems over the four prompts, and what `sheet` printed."""
    root = tmp_path_factory.mktemp("judged")
    out = root / "sheet"
    printed = make_sheet(
        out, write_prompts(root / "prompts.jsonl"), three_systems(tiny_model_dir, sample_path), "--parts", "2"
    )
    return out, printed


def read_key(directory: Path) -> dict[str, object]:
    key: dict[str, object] = json.loads((directory / "key.json").read_text(encoding="utf-8"))
    return key


def sheet_ids(text: str) -> list[str]:
    return re.findall(r"^- (\d{3}-[a-z]+): ", text, flags=re.MULTILINE)


def test_a_sheet_of_two_models_and_the_baseline_has_every_reply_once_with_its_key(sheet: tuple[Path, str]) -> None:
    out, printed = sheet
    key = read_key(out)
    assert list(key["systems"]) == list(NAMES)
    assert key["prompts"] == {"001": "first-a", "002": "follow-a", "003": "first-b", "004": "follow-b"}
    resolved = key["resolved"]
    assert resolved["betamodel"]["decode"]["strategy"] == "beam" and resolved["betamodel"]["decode"]["beam_size"] == 3
    assert resolved["betamodel"]["model"].endswith("+int8") and not resolved["alphamodel"]["model"].endswith("+int8")
    assert resolved["tfidfbase"]["pairs"] > 0
    rows = [json.loads(line) for line in (out / "replies.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 12 and all(row["id"] in key["ids"] and row["system"] in key["ids"][row["id"]] for row in rows)
    sheet_md = (out / "sheet.md").read_text(encoding="utf-8")
    shown = dict(re.findall(r"^- (\d{3}-[a-z]+): (.*)$", sheet_md, flags=re.MULTILINE))
    assert list(shown) == list(key["ids"])  # each id shown once, in the key, and nothing else
    for row in rows:
        assert shown[row["id"]] == (" ".join((row["text"] or "").lower().split()) or "(empty reply)")
    assert "bot: welcome back!\nuser: thanks\nbot: how was your week?\nuser: busy" in sheet_md  # back from the last
    assert sheet_md.startswith("# Rating sheet\n\n" + judged.RUBRIC.read_text(encoding="utf-8").strip())
    assert [line.split(":")[0] for line in printed.splitlines()] == list(NAMES)
    assert "4 replies" in printed and "looping" in printed
    for line in printed.splitlines():  # "Hi there" is a greeting: only "what do you do for fun?" counts
        reply = next(row["text"] for row in rows if row["system"] == line.split(":")[0] and row["prompt"] == "first-b")
        greeted = int(is_pleasantry(reply or ""))
        assert f"{greeted} of 1 first messages that are not greetings answered with a greeting" in line


def test_nothing_on_a_sheet_says_which_system_wrote_what(sheet: tuple[Path, str], sample_path: Path) -> None:
    out, _ = sheet
    for path in [*out.glob("sheet*.md"), *out.glob("ratings*.csv")]:
        text = path.read_text(encoding="utf-8")
        assert not any(name in text for name in NAMES), path
        assert "model" not in text and str(sample_path) not in text, path


def test_identical_replies_share_one_id_that_the_key_gives_both_systems(tiny_model_dir: Path, tmp_path: Path) -> None:
    same = f"model={tiny_model_dir},quantized=false,strategy=greedy"
    make_sheet(tmp_path / "out", write_prompts(tmp_path / "p.jsonl"), [f"one={same}", f"two={same},seed=1"])
    key = read_key(tmp_path / "out")
    assert key["ids"] == {f"00{n}-a": ["one", "two"] for n in range(1, 5)}
    assert sheet_ids((tmp_path / "out" / "sheet.md").read_text(encoding="utf-8")) == list(key["ids"])


def test_the_shuffle_is_seeded(
    sheet: tuple[Path, str], tiny_model_dir: Path, sample_path: Path, tmp_path: Path
) -> None:
    out, _ = sheet
    again = tmp_path / "again"
    make_sheet(again, write_prompts(tmp_path / "p.jsonl"), three_systems(tiny_model_dir, sample_path), "--parts", "2")
    for name in ("sheet.md", "sheet-1.md", "ratings.csv"):
        assert (again / name).read_text(encoding="utf-8") == (out / name).read_text(encoding="utf-8")
    assert read_key(again)["ids"] == read_key(out)["ids"]
    prompt = judged.Prompt("001", "p", "first", ("hi",))
    replies = {f"s{i}": f"reply {i}" for i in range(6)}
    arranged = judged.arrange(prompt, replies, 0)
    assert arranged == judged.arrange(prompt, dict(reversed(replies.items())), 0)  # not the order systems came in
    assert [shown.text for shown in arranged] != [shown.text for shown in judged.arrange(prompt, replies, 1)]


def test_an_empty_reply_is_shown_once_as_such() -> None:
    prompt = judged.Prompt("007", "p", "first", ("hi",))
    arranged = judged.arrange(prompt, {"x": None, "y": " ", "z": "Hello  There"}, 0)
    assert sorted((shown.text, shown.systems) for shown in arranged) == [("", ("x", "y")), ("hello there", ("z",))]
    assert "- 007-" in judged.render_prompt(prompt, arranged) and ": (empty reply)" in judged.render_prompt(
        prompt, arranged
    )


def test_parts_split_the_prompts_between_raters(sheet: tuple[Path, str]) -> None:
    out, _ = sheet
    whole = sheet_ids((out / "sheet.md").read_text(encoding="utf-8"))
    parts = [sheet_ids((out / f"sheet-{part}.md").read_text(encoding="utf-8")) for part in (1, 2)]
    assert {reply_id[:3] for reply_id in parts[0]} == {"001", "003"}  # every second prompt: both kinds in each part
    assert {reply_id[:3] for reply_id in parts[1]} == {"002", "004"}
    assert sorted(parts[0] + parts[1]) == sorted(whole)
    for part, ids in zip((1, 2), parts, strict=True):
        text = (out / f"sheet-{part}.md").read_text(encoding="utf-8")
        assert text.startswith(f"# Rating sheet, part {part} of 2") and "Rate each reply" in text
        rows = list(csv.reader((out / f"ratings-{part}.csv").open(encoding="utf-8")))
        assert rows[0] == ["id", "score", "on_topic", "fluent"] and [row[0] for row in rows[1:]] == ids


def fill(path: Path, *rating: str) -> None:
    """Give every reply id of the ratings template ``path`` the same ``rating``."""
    header, *rows = list(csv.reader(path.open(encoding="utf-8")))
    lines = [",".join(row) for row in [header, *([row[0], *rating] for row in rows)]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_filled_parts_are_scored_together(
    sheet: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = shutil.copytree(sheet[0], tmp_path / "sheet")
    fill(out / "ratings-1.csv", "3", "yes", "no")
    fill(out / "ratings-2.csv", "3", "yes", "no")
    assert judged.main(["score", str(out), "--bootstrap", "100"]) == 0  # ratings.csv, still empty, is left out
    scores = json.loads((out / "scores.json").read_text(encoding="utf-8"))
    assert [Path(path).name for path in scores["ratings"]] == ["ratings-1.csv", "ratings-2.csv"]
    expected = {"n": 4, "mean": 3.0, "interval": [3.0, 3.0], "on_topic_pct": 100.0, "fluent_pct": 0.0}
    for name in NAMES:
        assert {field: scores["tables"]["all"]["systems"][name][field] for field in expected} == expected
    fill(out / "ratings.csv", "4", "yes", "yes")
    capsys.readouterr()
    assert judged.main(["score", str(out)]) == 2  # the whole sheet and its parts both rated
    assert "is rated twice" in capsys.readouterr().err


# A sheet directory written by hand, so the expected figures can be worked out by hand: a and b wrote the same
# reply to prompt 001; a's reply to 003 loops and to 004 is empty; b's to 002 is empty and to 004 loops.
KEY = {
    "ids": {
        "001-a": ["a", "b"],
        "002-a": ["a"],
        "002-b": ["b"],
        "003-a": ["b"],
        "003-b": ["a"],
        "004-a": ["a"],
        "004-b": ["b"],
    },
    "prompts": {"001": "f1", "002": "f2", "003": "u1", "004": "u2"},
    "systems": {"a": {"baseline": "tfidf"}, "b": {"baseline": "tfidf"}},
}
TEXTS = {
    ("f1", "a"): "hello there",
    ("f1", "b"): "hello there",
    ("f2", "a"): "i like cats",
    ("f2", "b"): "",
    ("u1", "a"): "no no no",
    ("u1", "b"): "sure",
    ("u2", "a"): None,
    ("u2", "b"): "i am here i am here",
}
RATINGS = ["id,score,on_topic,fluent", "001-a,5,yes,yes", "002-a,4,yes,no", "002-b,1,no,no", "003-a,3,Yes,no"]
RATINGS += ["003-b,2,no,yes", "004-a,1,no,no", "004-b,2,no,no"]
# a: 5 4 2 1 -> mean 3, on topic y y n n, fluent y n y n, >= 4 twice; b: 5 1 3 2 -> mean 2.75, on topic y n y n,
# fluent y n n n, >= 4 once; b - a per prompt: 0 -3 +1 +1 -> -0.25. First messages: a 4.5, b 3; follow-ups: a 1.5,
# b 2.5.
EXPECTED = {
    "a": {
        "n": 4,
        "mean": 3.0,
        "on_topic_pct": 50.0,
        "fluent_pct": 50.0,
        "rated_4_plus_pct": 50.0,
        "empty": 1,
        "looping": 1,
    },
    "b": {
        "n": 4,
        "mean": 2.75,
        "on_topic_pct": 50.0,
        "fluent_pct": 25.0,
        "rated_4_plus_pct": 25.0,
        "empty": 1,
        "looping": 1,
    },
}


@pytest.fixture
def rated(tmp_path: Path) -> Path:
    """The hand-written sheet directory, with its ratings.csv filled in."""
    kinds = {"f1": "first", "f2": "first", "u1": "follow-up", "u2": "follow-up"}
    rows = [{"prompt": p, "kind": kinds[p], "system": s, "text": text} for (p, s), text in TEXTS.items()]
    (tmp_path / "replies.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (tmp_path / "key.json").write_text(json.dumps(KEY), encoding="utf-8")
    (tmp_path / "ratings.csv").write_text("\n".join(RATINGS) + "\n", encoding="utf-8")
    return tmp_path


def score(directory: Path, *options: str) -> tuple[int, dict[str, object], str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = judged.main(["score", str(directory), "--bootstrap", "2000", *options])
    scores = json.loads((directory / "scores.json").read_text(encoding="utf-8")) if status == 0 else {}
    return status, scores, printed.getvalue()


def test_scores_are_the_means_and_shares_worked_out_by_hand(rated: Path) -> None:
    status, scores, printed = score(rated, "--versus", "a")
    assert status == 0
    tables = scores["tables"]
    for name, expected in EXPECTED.items():
        assert {field: tables["all"]["systems"][name][field] for field in expected} == pytest.approx(expected)
    assert tables["all"]["versus"]["b"]["difference"] == pytest.approx(-0.25) and "a" not in tables["all"]["versus"]
    assert [tables["first"]["systems"][name]["mean"] for name in "ab"] == pytest.approx([4.5, 3.0])
    assert [tables["follow-up"]["systems"][name]["mean"] for name in "ab"] == pytest.approx([1.5, 2.5])
    assert tables["follow-up"]["systems"]["a"] | {"interval": None} == pytest.approx(
        {"n": 2, "mean": 1.5, "interval": None, "on_topic_pct": 0.0, "fluent_pct": 50.0, "rated_4_plus_pct": 0.0}
        | {"empty": 1, "looping": 1}
    )
    assert "| a | 4 | 3.00 |" in printed and "| b | -0.25 |" in printed and "### Follow-ups (2 prompts)" in printed


def test_the_bootstrap_interval_holds_the_mean_and_is_deterministic(rated: Path) -> None:
    _, first, _ = score(rated, "--versus", "a")
    _, again, _ = score(rated, "--versus", "a")
    assert first == again
    for table in first["tables"].values():
        for row in table["systems"].values():
            low, high = row["interval"]
            assert low <= row["mean"] <= high
        low, high = table["versus"]["b"]["interval"]
        assert low <= table["versus"]["b"]["difference"] <= high
    low, high = first["tables"]["all"]["systems"]["a"]["interval"]
    assert 1 <= low < high <= 5


@pytest.mark.parametrize(
    ("change", "line", "says"),
    [
        (lambda rows: rows[:-1], 8, "004-b is not rated"),
        (lambda rows: [*rows[:-1], "004-b,,,"], 8, "004-b is not rated"),
        (lambda rows: [*rows, "009-z,3,yes,yes"], 9, "unknown reply id '009-z'"),
        (lambda rows: [*rows, "001-a,3,yes,yes"], 9, "001-a is rated twice"),
        (lambda rows: [*rows[:-1], "004-b,6,no,no"], 8, "score must be a whole number from 1 to 5"),
        (lambda rows: [*rows[:-1], "004-b,0,no,no"], 8, "score must be"),
        (lambda rows: [*rows[:-1], "004-b,2.5,no,no"], 8, "score must be"),
        (lambda rows: [*rows[:-1], "004-b,2,maybe,no"], 8, "on_topic must be yes or no"),
        (lambda rows: [*rows[:-1], "004-b,2,no,"], 8, "fluent must be yes or no"),
        (lambda rows: ["id,rating,on_topic,fluent", *rows[1:]], 1, "header"),
    ],
)
def test_bad_ratings_are_a_one_line_error_naming_the_line(
    rated: Path, capsys: pytest.CaptureFixture[str], change: object, line: int, says: str
) -> None:
    (rated / "ratings.csv").write_text("\n".join(change(RATINGS)) + "\n", encoding="utf-8")  # type: ignore[operator]
    status, _, _ = score(rated)
    error = capsys.readouterr().err
    assert status == 2 and error.count("\n") == 1
    assert error.startswith(f"{rated / 'ratings.csv'}:{line}: ") and says in error


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "not JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"id": "x", "kind": "last", "turns": ["hi"]}', "kind must be one of first, follow-up"),
        ('{"id": "x", "kind": "first", "turns": []}', "turns must be a non-empty list"),
        ('{"id": "x", "kind": "first", "turns": ["hi", "hello", "how are you"]}', "this first prompt has 3"),
        ('{"id": "first-a", "kind": "first", "turns": ["hi"]}', "id 'first-a' was used before, on line 1"),
    ],
)
def test_a_bad_prompt_line_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, says: str
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps(PROMPTS[0]) + "\n" + line + "\n", encoding="utf-8")
    argv = ["sheet", "--prompts", str(prompts), "--out", str(tmp_path / "out"), "--system", "a=baseline=tfidf"]
    assert judged.main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"{prompts}:2: ") and says in error


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("model={model},beam_width=4", "unknown key 'beam_width'"),
        ("model={model},beam_size=many", "beam_size=many is not a whole number"),
        ("model={model},block_repeat=maybe", "block_repeat=maybe is not true or false"),
        ("model={model},strategy=shout", "strategy must be one of"),
        ("baseline=tfidf,model_dir=x", "unknown key 'model_dir'"),
        ("baseline=bm25", "unknown baseline 'bm25'"),
    ],
)
def test_a_bad_system_spec_is_a_one_line_error(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], spec: str, says: str
) -> None:
    system = "a=" + spec.format(model=tiny_model_dir)
    argv = ["sheet", "--prompts", str(write_prompts(tmp_path / "p.jsonl")), "--out", str(tmp_path / "out")]
    assert judged.main([*argv, "--system", system]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("--system a: ") and says in error


def test_a_sheet_is_not_written_over_without_force(sheet: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = sheet
    prompts = write_prompts(out.parent / "prompts.jsonl")
    assert judged.main(["sheet", "--prompts", str(prompts), "--out", str(out), "--system", "a=baseline=x"]) == 2
    assert "pass --force" in capsys.readouterr().err


def test_a_model_system_answers_from_its_persona_as_the_chat_does(tiny_model_dir: Path, tmp_path: Path) -> None:
    from chatbot.dialogue.types import Role, Turn

    persona = tmp_path / "persona.yaml"
    persona.write_text('answers:\n  - about: name\n    patterns: ["your name"]\n    reply: "i am tiny."\n')
    histories = [[Turn(Role.USER, "what's your name?")], [Turn(Role.USER, "do you have any pets?")]]
    system = judged.model_system("with", {"model": str(tiny_model_dir), "persona": str(persona)})
    plain = judged.model_system("without", {"model": str(tiny_model_dir), "persona": "none"})
    assert system.replies(histories) == ["i am tiny.", plain.replies(histories)[1]]
    assert plain.replies(histories)[0] != "i am tiny."
    assert system.describe()["persona"] == str(persona) and plain.describe()["persona"] is None
