"""CSV/TSV pairs: with and without a header, conversation ids for the split, and errors with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.corpora import load_corpus
from chatbot.corpora.types import Utterance
from chatbot.errors import DataError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_header_uses_named_columns_in_any_order(tmp_path: Path) -> None:
    path = write(
        tmp_path, "pairs.csv", 'response,note,context,conversation_id\n"hi, you",x,hello,c7\nfine,,how are you,\n'
    )
    first, second = list(load_corpus(str(path)))
    assert first.id == "c7"
    assert first.turns == (Utterance("a", "hello"), Utterance("b", "hi, you"))
    assert second.id == "pairs.csv:3"
    assert [turn.text for turn in second.turns] == ["how are you", "fine"]


def test_tsv_without_header_takes_the_first_two_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "pairs.tsv", "hello there\tgeneral kenobi\textra\n\n  \t \nwhat's up\tnot much\n")
    conversations = list(load_corpus(str(path)))
    assert [[t.text for t in c.turns] for c in conversations] == [
        ["hello there", "general kenobi"],
        ["what's up", "not much"],
    ]
    assert [c.id for c in conversations] == ["pairs.tsv:1", "pairs.tsv:4"]


def test_a_row_with_too_few_columns_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "pairs.csv", "context,response\nhello,hi\nlonely\n")
    with pytest.raises(DataError, match=r"pairs\.csv:3: expected 2 columns, got 1"):
        list(load_corpus(str(path)))


def test_unterminated_quote_and_bad_encoding_are_data_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "pairs.csv", 'hello,"never closed\n')
    with pytest.raises(DataError, match=r"pairs\.csv"):
        list(load_corpus(str(path)))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("caf\xe9,ok\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        list(load_corpus(str(latin)))
