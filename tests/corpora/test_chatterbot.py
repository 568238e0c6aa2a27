"""ChatterBot YAML: a hand-written file's ids, speakers and errors; the installed corpus by language and by topic."""

from __future__ import annotations

import itertools
import logging
import sys
from pathlib import Path

import pytest
import yaml

from chatbot.corpora.chatterbot import chatterbot_data_dir, read_chatterbot_corpus, read_chatterbot_yaml
from chatbot.corpora.types import Utterance
from chatbot.errors import ChatbotError, DataError

GREETINGS = """\
categories:
- greetings
conversations:
- - Hello
  - Hi there,   friend
  - How are you?
- - In what year?
  - 1984
  - yes
"""


def write(tmp_path: Path, text: str, name: str = "greetings.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_entries_alternate_speakers_and_take_ids_from_the_file_name(tmp_path: Path) -> None:
    first, second = read_chatterbot_yaml(write(tmp_path, GREETINGS))
    assert first.id == "greetings:0"
    assert first.turns == (Utterance("a", "Hello"), Utterance("b", "Hi there, friend"), Utterance("a", "How are you?"))
    # Unquoted scalars arrive as int and bool; str() is documented, including the loss of "yes".
    assert second.id == "greetings:1"
    assert [turn.text for turn in second.turns] == ["In what year?", "1984", "True"]


def test_prefix_replaces_the_file_name_in_ids(tmp_path: Path) -> None:
    ids = [conversation.id for conversation in read_chatterbot_yaml(write(tmp_path, GREETINGS), prefix="mine")]
    assert ids == ["mine:0", "mine:1"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("", '"conversations" list'),
        ("categories: [x]\n", '"conversations" list'),
        ("conversations: hello\n", '"conversations" list'),
        ("- - a\n  - b\n", '"conversations" list'),
        ("conversations:\n- - a\n  - b\n- just one string\n", "conversations[1]: expected a list of strings"),
        ("conversations:\n- - a\n  - {b: c}\n", "conversations[0][1]: expected a string, got a mapping"),
        ("conversations:\n- - a\n  -\n", "conversations[0][1]: expected a string, got an empty item"),
    ],
)
def test_malformed_documents_name_the_file(tmp_path: Path, content: str, reason: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(DataError) as caught:
        list(read_chatterbot_yaml(path))
    assert str(caught.value).startswith(f"{path}: ")
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    ("content", "line", "reason"),
    [
        ("conversations:\n- - Hello\n  - Hi: there: you\n- - fine\n", 3, "mapping values are not allowed"),
        ("conversations:\n- - Hello\n- - [unclosed\n  - Hi\n", 5, "flow sequence from line 3"),
    ],
)
def test_invalid_yaml_names_file_and_one_based_line(tmp_path: Path, content: str, line: int, reason: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(DataError) as caught:
        list(read_chatterbot_yaml(path))
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: invalid YAML")
    assert reason in str(caught.value)


def test_non_utf8_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes("conversations:\n- - caf\xe9\n  - oui\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        list(read_chatterbot_yaml(path))


def test_installed_english_corpus_loads_whole() -> None:
    conversations = list(read_chatterbot_corpus("english"))
    # 1.3.3 has 2,026 entries in 21 topics, one of them mis-indented upstream and skipped.
    assert len(conversations) > 1500
    assert len({conversation.id for conversation in conversations}) == len(conversations)
    assert conversations[0].id == "chatterbot:english/ai:0"
    assert all(len(conversation.turns) >= 2 for conversation in conversations)
    turns = [conversation.turns for conversation in conversations]
    assert all(a.speaker != b.speaker for pairs in turns for a, b in itertools.pairwise(pairs))


def test_one_installed_topic_has_every_entry_of_its_file() -> None:
    conversations = list(read_chatterbot_corpus("english/greetings"))
    entries = yaml.safe_load((chatterbot_data_dir() / "english" / "greetings.yml").read_text(encoding="utf-8"))
    assert len(conversations) == len(entries["conversations"])
    assert [conversation.id for conversation in conversations[:2]] == [
        "chatterbot:english/greetings:0",
        "chatterbot:english/greetings:1",
    ]
    assert [turn.text for turn in conversations[0].turns] == entries["conversations"][0]


@pytest.mark.parametrize(
    ("name", "listed"),
    [("klingon", "english"), ("../english", "english"), ("english/weather", "greetings"), ("english/", "greetings")],
)
def test_unknown_language_or_topic_lists_what_exists(name: str, listed: str) -> None:
    with pytest.raises(ChatbotError, match="unknown chatterbot") as caught:
        list(read_chatterbot_corpus(name))
    assert listed in str(caught.value)


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "chatterbot_corpus", None)  # makes the import raise ImportError
    with pytest.raises(ChatbotError, match="pip install chatterbot-corpus"):
        list(read_chatterbot_corpus("english"))


def test_packaged_corpus_skips_malformed_entries_and_keeps_ids(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "xx").mkdir()
    path = write(tmp_path / "xx", "conversations:\n- - a\n  - b\n- not a list\n- - c\n  - d\n", "topic.yml")
    with caplog.at_level(logging.WARNING):
        ids = [conversation.id for conversation in read_chatterbot_corpus("xx", data_dir=tmp_path)]
    assert ids == ["chatterbot:xx/topic:0", "chatterbot:xx/topic:2"]
    assert f"{path}: conversations[1]" in caplog.text
    with pytest.raises(DataError):  # the same file read as the user's own is an error
        list(read_chatterbot_yaml(path))
