"""Persona: who the bot says it is, the same every time it is asked.

A model trained on other people's chats answers "what's your name?" with whatever name its training replies
held ("i'm brooke", "my name's brian"), and "are you a robot?" as a person would. A persona file fixes those
answers: each entry names what it is about, the questions it answers (regular expressions, ignoring case,
searched in the user's message with its spaces collapsed) and the reply. A message that matches an entry gets
that reply; any other message goes to the model. The first matching entry wins.

    # persona.yaml
    answers:
      - about: name
        patterns: ["what('?s| is) (ur|your) name", "who (are|r) (you|u)[?!. ]*$"]
        reply: "i'm chitchat, a chatbot. what's your name?"

``PersonaGenerator`` puts a persona in front of any Generator, so the dialogue manager and the channels do not
change; its replies are stored with the source ``persona:ABOUT``, which /why shows. A model directory may hold a
``persona.yaml``; the CLI uses it unless told another file or none (cli/wiring.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from chatbot.corpora.files import read_text
from chatbot.corpora.yaml_file import compose_yaml
from chatbot.dialogue.generator import Generated, Generator, GeneratorInFront
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Turn
from chatbot.errors import DataError

FILE_NAME = "persona.yaml"
SOURCE_PREFIX = "persona:"
ABOUT = re.compile(r"[a-z0-9_-]{1,40}")
MAX_REPLY = 4096  # what Telegram sends in one message


@dataclass(frozen=True)
class Answer:
    """One entry of a persona: what it is about, the questions it answers, and the reply."""

    about: str
    patterns: tuple[re.Pattern[str], ...]
    reply: str


@dataclass(frozen=True)
class Persona:
    """A persona's answers, in file order; ``path`` says where they were read from."""

    path: Path
    answers: tuple[Answer, ...]

    def answer(self, message: str) -> Answer | None:
        """The first entry one of whose patterns occurs in ``message``, or None."""
        text = " ".join(message.split())
        return next((a for a in self.answers if any(p.search(text) for p in a.patterns)), None)


def persona_for(model_dir: Path, option: str | None) -> Persona | None:
    """The persona a command runs with: the file ``option`` names, none for "none", and without an option the
    model directory's persona.yaml if it has one."""
    if option == "none":
        return None
    path = Path(option) if option is not None else model_dir / FILE_NAME
    return read_persona(path) if option is not None or path.is_file() else None


def read_persona(path: Path) -> Persona:
    """The persona in the YAML file ``path``; anything wrong with it is a DataError naming the file and line."""
    root = compose_yaml(path, read_text(path))
    entries = _mapping(path, root).get("answers")
    if not isinstance(entries, yaml.SequenceNode) or not entries.value:
        raise DataError(path, 'expected a mapping with a non-empty "answers" list', _line(entries or root))
    return Persona(path, tuple(_answer(path, entry) for entry in entries.value))


def _answer(path: Path, node: yaml.Node) -> Answer:
    fields = _mapping(path, node)
    if set(fields) != {"about", "patterns", "reply"}:
        raise DataError(path, "an answer has exactly the keys about, patterns and reply", _line(node))
    about, reply = _text(path, fields["about"]), _text(path, fields["reply"])
    if not ABOUT.fullmatch(about):
        raise DataError(path, f"about {about!r}: use 1-40 of a-z, 0-9, _ and -", _line(fields["about"]))
    if len(reply) > MAX_REPLY:
        raise DataError(path, f"the reply is over {MAX_REPLY} characters", _line(fields["reply"]))
    patterns = fields["patterns"]
    if not isinstance(patterns, yaml.SequenceNode) or not patterns.value:
        raise DataError(path, "patterns must be a non-empty list of regular expressions", _line(patterns))
    return Answer(about, tuple(_pattern(path, each) for each in patterns.value), reply)


def _pattern(path: Path, node: yaml.Node) -> re.Pattern[str]:
    try:
        return re.compile(_text(path, node), re.IGNORECASE)
    except re.error as error:
        raise DataError(path, f"not a regular expression ({error})", _line(node)) from error


def _mapping(path: Path, node: yaml.Node | None) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        raise DataError(path, "expected a mapping", _line(node))
    return {str(key.value): value for key, value in node.value}


def _text(path: Path, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        raise DataError(path, "expected a non-empty text", _line(node))
    return str(node.value).strip()


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


class PersonaGenerator(GeneratorInFront):
    """A Generator that answers from ``persona`` where the user's newest message matches it, and leaves every
    other message to ``generator``."""

    def __init__(self, generator: Generator, persona: Persona) -> None:
        self.generator = generator
        self.persona = persona

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        found = self.persona.answer(history[-1].text) if history else None
        if found is None:
            return self.generator.reply(history, settings)
        return Generated(
            found.reply, None, self.model_name, {"persona": str(self.persona.path)}, SOURCE_PREFIX + found.about
        )

    def explain(self, history: Sequence[Turn], reply: str) -> str | None:
        found = self.persona.answer(history[-1].text) if history else None
        if found is not None and found.reply == reply:
            return f"The persona ({self.persona.path}) answers this message: the model was not asked."
        return self.generator.explain(history, reply)
