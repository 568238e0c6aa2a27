"""bench/judge_student.py: the judge is MiniLM's first layers (against transformers' own BERT on the installed weights),
reads a context once for all its replies as it reads each pair whole, stores only what it fitted, and refuses a
damaged file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from chatbot.errors import ModelError
from chatbot.semantic import encoder_path
from tests.bench.scripts import load_script

student = load_script("judge_student.py")
Judge, JudgeConfig, context_text = student.Judge, student.JudgeConfig, student.context_text

CONTEXT = "hi there | hello! | how are you doing today?"
REPLIES = ["i'm good, thanks! you?", "aww", "long " * 200]  # the last is cut to its first 31 pieces


@pytest.mark.parametrize("layers", [1, 2])
def test_a_context_is_read_as_minilm_reads_it(layers: int) -> None:
    """The judge's embeddings and layers are BERT's: a context (whose pieces attend to the context alone) comes
    out of them as it comes out of transformers' own BERT on the installed weights."""
    from transformers import AutoModel, AutoTokenizer

    judge = Judge.from_encoder(JudgeConfig(layers=layers), encoder_path())
    bert = AutoModel.from_pretrained(str(encoder_path())).eval()
    bert.encoder.layer = bert.encoder.layer[:layers]
    contexts = [CONTEXT, "i just adopted a puppy!"]
    batch = AutoTokenizer.from_pretrained(str(encoder_path()))(contexts, padding=True, return_tensors="pt")
    context_ids, _ = judge.pieces(contexts, [])
    assert context_ids == [[i for i in row if i] for row in batch["input_ids"].tolist()]
    mask = batch["attention_mask"].bool()
    with torch.inference_mode():
        states = judge.network.embeddings(batch["input_ids"], torch.zeros_like(batch["input_ids"]))
        for layer in judge.network.layers:
            states = layer(states, states[:, :0], mask.unsqueeze(1).expand(-1, mask.size(1), -1))
        expected = bert(**batch).last_hidden_state  # (contexts, pieces, width)
    assert torch.allclose(states[mask], expected[mask], atol=1e-4)


def test_a_context_keeps_its_last_pieces_and_a_reply_its_first() -> None:
    judge = Judge.from_encoder(JudgeConfig(layers=1, context_pieces=4, reply_pieces=3), encoder_path())
    (context,), replies = judge.pieces(["one two three four five six"], ["a b c d e", "ok"])
    words = judge.tokenizer.encode("three four five six a b c ok", add_special_tokens=False).ids
    assert context == [judge.start, *words[:4], judge.end]  # [CLS] three four five six [SEP]
    assert replies == [[*words[4:7], judge.end], [words[7], judge.end]]


@pytest.mark.parametrize("layers", [1, 2])
def test_replies_rated_together_after_one_context_are_rated_as_whole_pairs(layers: int) -> None:
    """``rate`` reads the context once for all replies (the reply path); fitting reads whole pairs, padded
    (``pairs``): the two give one rating, and a reply's rating does not depend on the others beside it."""
    torch.manual_seed(layers)
    judge = Judge.from_encoder(JudgeConfig(layers=layers), encoder_path())
    together = judge.rate(CONTEXT, REPLIES)
    with torch.inference_mode():
        whole = (judge.network(*judge.pairs([CONTEXT] * 3, REPLIES)) + 3.0).tolist()
    assert together == pytest.approx(whole, abs=1e-4)
    assert [judge.rate(CONTEXT, [reply])[0] for reply in REPLIES] == pytest.approx(together, abs=1e-4)
    assert len(set(together)) == 3  # the ratings tell the replies apart
    assert judge.rate(CONTEXT, []) == []


def test_the_context_is_the_last_turns_lowercased() -> None:
    turns = ["Hi", " hello! how are you?", "Good", "i failed my EXAM "]
    assert context_text(turns, JudgeConfig(turns=3)) == "hello! how are you? | good | i failed my exam"
    assert context_text(turns, JudgeConfig(turns=1)) == "i failed my exam"


def test_judge_pt_holds_the_fitted_weights_alone_and_reads_back(tmp_path: Path) -> None:
    torch.manual_seed(1)
    judge = Judge.from_encoder(JudgeConfig(layers=1), encoder_path())
    with torch.no_grad():
        for parameter in judge.network.layers.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))  # as fitting moves them from the encoder's
    data = judge.to_bytes()
    assert len(data) < 4_000_000  # one layer and the output in fp16; the 30522-piece embeddings stay installed
    read = Judge.from_bytes(data, encoder_path(), tmp_path / "judge.pt")
    assert read.config == judge.config
    assert read.rate(CONTEXT, REPLIES) == pytest.approx(judge.rate(CONTEXT, REPLIES), abs=0.02)  # fp16 storage


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "not a judge file this version can read"),
        (lambda data: b"hello", "not a judge file this version can read"),
    ],
)
def test_a_damaged_judge_file_is_a_one_line_model_error(damage: object, message: str, tmp_path: Path) -> None:
    data = Judge.from_encoder(JudgeConfig(layers=1), encoder_path()).to_bytes()
    with pytest.raises(ModelError, match=message) as raised:
        Judge.from_bytes(damage(data), encoder_path(), tmp_path / "judge.pt")  # type: ignore[operator]
    assert "\n" not in str(raised.value) and "judge.pt" in str(raised.value)


def test_a_judge_file_of_another_format_or_shape_is_refused(tmp_path: Path) -> None:
    import io

    judge = Judge.from_encoder(JudgeConfig(layers=1), encoder_path())
    stored = torch.load(io.BytesIO(judge.to_bytes()), weights_only=True)
    for changed, message in [
        (stored | {"format_version": 99}, "judge format 99, expected 1"),
        (stored | {"config": stored["config"] | {"layers": 2}}, "do not fit its config"),
        ({"format_version": 1}, "lacks its config or weights"),
    ]:
        buffer = io.BytesIO()
        torch.save(changed, buffer)
        with pytest.raises(ModelError, match=message):
            Judge.from_bytes(buffer.getvalue(), encoder_path(), tmp_path / "judge.pt")
