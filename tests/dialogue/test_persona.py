"""Persona: a YAML file of answers about the bot, matched against the user's message, answering in front of any
generator; every mistake in the file is one line naming it and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.dialogue.generator import EchoGenerator
from chatbot.dialogue.manager import DialogueManager
from chatbot.dialogue.persona import FILE_NAME, PersonaGenerator, persona_for, read_persona
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Role, Turn
from chatbot.errors import DataError
from tests.database import ScratchDatabase

PERSONA = """\
answers:
  - about: name
    patterns: ["what('?s| is) (ur|your) name", "^who are you[?!. ]*$"]
    reply: "i'm testbot. and you?"
  - about: bot
    patterns:
      - "are (you|u) (a )?(robot|bot|human)"
    reply: "a bot, yes."
  - about: catch-all-names
    patterns: ["name"]
    reply: "never reached for a name question"
"""
SHIPPED = Path(__file__).resolve().parents[2] / "data" / "default-model" / FILE_NAME


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "persona.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_first_answer_whose_pattern_occurs_in_the_lowercased_message_wins(tmp_path: Path) -> None:
    persona = read_persona(write(tmp_path, PERSONA))
    assert [a.about for a in persona.answers] == ["name", "bot", "catch-all-names"]
    for message, about in [
        ("What's   your NAME?", "name"),
        ("WHO ARE YOU", "name"),
        ("so what is ur name", "name"),
        ("Who are you?!", "name"),
        ("who are you going with?", None),  # the pattern is anchored at the end of the message
        ("are u a robot?", "bot"),
        ("are you a cat person?", None),
        ("my name is ann", "catch-all-names"),
    ]:
        found = persona.answer(message)
        assert (found.about if found else None) == about, message


@pytest.mark.parametrize(
    ("text", "line", "error"),
    [
        ("answers: [\n  - about: x\n    reply: 'unclosed\n", None, "invalid YAML"),
        ("- just a list\n", 1, "expected a mapping"),
        ("answers: []\n", 1, 'non-empty "answers" list'),
        ("other: 1\n", 1, '"answers" list'),
        ("answers:\n  - about: name\n    reply: hi\n", 2, "exactly the keys about, patterns and reply"),
        ("answers:\n  - about: Big Name\n    patterns: [x]\n    reply: hi\n", 2, "about 'Big Name'"),
        ("answers:\n  - about: a\n    patterns: []\n    reply: hi\n", 3, "non-empty list of regular expressions"),
        ("answers:\n  - about: a\n    patterns:\n      - ok\n      - '(unclosed'\n    reply: hi\n", 5, "not a regular"),
        ("answers:\n  - about: a\n    patterns: [x]\n    reply: ''\n", 4, "non-empty text"),
        ("answers:\n  - about: a\n    patterns: [x]\n    reply: [1]\n", 4, "non-empty text"),
        (f"answers:\n  - about: a\n    patterns: [x]\n    reply: {'y' * 4097}\n", 4, "over 4096 characters"),
        ("answers: " + "[" * 5000, None, "invalid YAML"),
        ('answers: "\\U7fffffff"', None, "invalid YAML"),
    ],
)
def test_a_bad_persona_file_is_one_line_naming_the_file_and_line(
    tmp_path: Path, text: str, line: int | None, error: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError, match=error) as raised:
        read_persona(path)
    assert raised.value.path == str(path)
    if line is not None:
        assert raised.value.line == line
    assert "\n" not in str(raised.value)


def test_a_missing_or_undecodable_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read: No such file"):
        read_persona(tmp_path / "absent.yaml")
    (tmp_path / "latin1.yaml").write_bytes("answers:\n  - about: caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8") as raised:
        read_persona(tmp_path / "latin1.yaml")
    assert raised.value.line == 2


def test_which_persona_a_command_runs_with(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    assert persona_for(model_dir, None) is None  # the model directory has none
    write(model_dir, PERSONA)
    own = persona_for(model_dir, None)
    assert own is not None and own.path == model_dir / FILE_NAME
    assert persona_for(model_dir, "none") is None
    other = write(tmp_path, PERSONA.replace("testbot", "otherbot"))
    chosen = persona_for(model_dir, str(other))
    assert chosen is not None and chosen.answers[0].reply == "i'm otherbot. and you?"
    with pytest.raises(DataError):
        persona_for(model_dir, str(tmp_path / "absent.yaml"))  # named but missing: an error, not silence


def test_persona_answers_in_front_of_the_generator_and_leaves_the_rest_to_it(tmp_path: Path) -> None:
    echo = EchoGenerator()
    generator = PersonaGenerator(echo, read_persona(write(tmp_path, PERSONA)))
    settings = DecodeSettings()
    history = [Turn(Role.USER, "hi"), Turn(Role.BOT, "hello"), Turn(Role.USER, "what's your name?")]
    answered = generator.reply(history, settings)
    assert (answered.text, answered.source, answered.score) == ("i'm testbot. and you?", "persona:name", None)
    assert answered.model == "echo" and answered.decoding == {"persona": str(tmp_path / "persona.yaml")}
    assert echo.calls == []  # the model was not asked
    assert generator.reply(history[:1], settings).text == "echo: hi"
    assert (generator.history_turns, generator.model_name) == (echo.history_turns, "echo")
    assert generator.default_settings == echo.default_settings
    assert "the model was not asked" in (generator.explain(history, "i'm testbot. and you?") or "")
    assert generator.explain(history[:1], "echo: hi") == echo.explain(history[:1], "echo: hi")


def test_a_persona_reply_is_stored_and_why_says_where_it_came_from(tmp_path: Path) -> None:
    store = ScratchDatabase()
    generator = PersonaGenerator(EchoGenerator(), read_persona(write(tmp_path, PERSONA)))
    manager = DialogueManager(generator, store.transaction)
    assert manager.respond("test", "a", "are you a bot?").text == "a bot, yes."
    why = manager.respond("test", "a", "/why").text
    assert "Source: the bot's persona (its answer about bot), not the model" in why
    assert "Score: none" in why and "the model was not asked" in why
    assert manager.respond("test", "a", "nice").text == "echo: nice"


def test_the_shipped_persona_answers_questions_about_the_bot_and_nothing_else() -> None:
    persona = read_persona(SHIPPED)
    asked = {
        "what's your name?": "name",
        "hello, who am i talking to?": "name",
        "are you a robot or a real person?": "bot",
        "are you real?": "bot",
        "how old are you?": "age",
        "where do you live?": "home",
        "r u a student?": "student",
        "so what are you studying?": "studies",
        "what do you do for a living?": "work",
        "who made you?": "maker",
    }
    for message, about in asked.items():
        found = persona.answer(message)
        assert found is not None and found.about == about, message
    for message in ("what do you do for fun?", "are you a cat person or a dog person", "who are you going with?"):
        assert persona.answer(message) is None, message


def test_adding_a_reply_index_keeps_the_model_directory_s_persona(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from chatbot.training import checkpoint

    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    write(model_dir, PERSONA)
    checkpoint.attach(model_dir, {"extra.txt": b"x"}, None)  # what `chatbot index` does, swapped in whole
    kept = persona_for(model_dir, None)
    assert kept is not None and kept.answers[0].reply == "i'm testbot. and you?"
