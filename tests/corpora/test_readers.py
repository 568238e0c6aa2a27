"""Readers: JSONL formats and their errors, merging of consecutive turns, the built-in chitchat corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.corpora import load_corpora, load_corpus
from chatbot.corpora.jsonl import read_jsonl
from chatbot.corpora.types import Utterance
from chatbot.errors import DataError


def write(tmp_path: Path, text: str, name: str = "log.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_reads_both_turn_forms_and_merges_consecutive_speakers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '{"id": "a", "turns": [{"speaker": "x", "text": "hi"}, {"speaker": "x", "text": " there "},'
        ' {"speaker": "y", "text": "hello"}]}\n\n'
        '{"turns": ["one", "two", "three"]}\n',
    )
    first, second = list(read_jsonl(path))
    assert first.id == "a"
    assert first.turns == (Utterance("x", "hi there"), Utterance("y", "hello"))
    assert second.id == "log.jsonl:3"
    assert [turn.speaker for turn in second.turns] == ["a", "b", "a"]


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ('{"turns": []}\n{"turns": [oops\n', 2, "invalid JSON"),
        ('["not", "an", "object"]\n', 1, '"turns" list'),
        ('{"turns": [{"speaker": "a"}]}\n', 1, "turn 1"),
        ('{"id": [1], "turns": []}\n', 1, '"id"'),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path: Path, content: str, line: int, reason: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(DataError) as caught:
        list(read_jsonl(path))
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert reason in str(caught.value)


def test_non_utf8_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"turns": ["caf\xe9"]}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        list(read_jsonl(path))


def test_unknown_source_and_format_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_corpus(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DataError, match="unknown log format"):
        load_corpus(str(write(tmp_path, "a,b\n", "pairs.xyz")))


def test_chitchat_is_built_in_and_complete() -> None:
    conversations = load_corpora(["chitchat"])
    assert len(conversations) == 7168
    assert len({conversation.id for conversation in conversations}) == 7168
    multi = [c for c in conversations if len(c.turns) >= 2]
    assert all(a.speaker != b.speaker for c in multi for a, b in zip(c.turns, c.turns[1:], strict=False))


def test_load_corpus_dispatches_every_format(tmp_path: Path) -> None:
    yaml_path = write(tmp_path, "conversations:\n- - hi\n  - hello\n", "topic.yml")
    export = write(
        tmp_path,
        '{"name": "c", "type": "personal_chat", "id": 5, "messages": ['
        '{"id": 1, "type": "message", "date": "2024-01-01T10:00:00", "from_id": "user1", "text": "hi"},'
        '{"id": 2, "type": "message", "date": "2024-01-01T10:01:00", "from_id": "user2", "text": "hey"}]}',
        "result.json",
    )
    table = write(tmp_path, "hi\thello\n", "pairs.tsv")
    assert [c.id for c in load_corpus(str(yaml_path))] == ["topic:0"]
    assert [c.id for c in load_corpus(str(export))] == ["telegram:5:1"]
    assert [c.id for c in load_corpus(str(table))] == ["pairs.tsv:1"]
    assert next(iter(load_corpus("chatterbot:english/greetings"))).id == "chatterbot:english/greetings:0"
