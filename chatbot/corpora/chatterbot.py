"""ChatterBot's YAML corpora: files of ``categories:`` and ``conversations:``, each conversation a list of utterances.

A file looks like::

    categories:
    - greetings
    conversations:
    - - Hello
      - Hi, how are you?
      - Fine, thanks.

The utterances of an entry alternate between speakers ``a`` and ``b``. Unquoted numbers and booleans are kept as their
``str()`` (chatterbot's files answer trivia with years); YAML reads an unquoted ``yes``/``no``/``on``/``off`` as a
boolean, so such a word comes out as ``True``/``False`` unless quoted. Anything else that is not a list of strings is a
DataError in a user's file; in the packaged corpus (``read_chatterbot_corpus``) that entry is skipped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

from chatbot.corpora.files import read_text
from chatbot.corpora.jsonl import merge_consecutive
from chatbot.corpora.types import Conversation, Utterance
from chatbot.corpora.yaml_file import load_yaml
from chatbot.errors import ChatbotError, DataError

logger = logging.getLogger(__name__)


def read_chatterbot_yaml(path: Path, *, prefix: str | None = None) -> Iterator[Conversation]:
    """Yield one conversation per entry, with id ``<prefix or file stem>:<index>``; bad input raises DataError."""
    label = path.stem if prefix is None else prefix
    for index, entry in enumerate(_load_entries(path)):
        yield _conversation(path, f"{label}:{index}", index, entry)


def read_chatterbot_corpus(name: str, *, data_dir: Path | None = None) -> Iterator[Conversation]:
    """Read a language's topics in sorted order (``english``) or one topic (``english/greetings``) of the package.

    ``data_dir`` defaults to the installed package's data; an unknown name raises ChatbotError now, not on iteration.
    """
    return _read_packaged(_topic_files(data_dir or chatterbot_data_dir(), name))


def chatterbot_data_dir() -> Path:
    """Where the installed ``chatterbot-corpus`` wheel keeps its ``<language>/<topic>.yml`` files."""
    try:
        import chatterbot_corpus  # type: ignore[import-untyped]
    except ImportError as error:
        raise ChatbotError(
            "the chatterbot corpus needs the chatterbot-corpus package: pip install chatterbot-corpus"
        ) from error
    return Path(chatterbot_corpus.__file__).parent / "data"


def _topic_files(data_dir: Path, name: str) -> list[Path]:
    language, slash, topic = name.partition("/")
    # Membership in the listing, not path existence, so that names like "../x" cannot reach outside the data.
    languages = sorted(entry.name for entry in data_dir.iterdir() if entry.is_dir())
    if language not in languages:
        raise ChatbotError(f"unknown chatterbot language {language!r}; available: {', '.join(languages)}")
    files = sorted((data_dir / language).glob("*.yml"))
    if not slash:
        return files
    chosen = [file for file in files if file.stem == topic]
    if not chosen:
        topics = ", ".join(file.stem for file in files)
        raise ChatbotError(f"unknown chatterbot topic {name!r}; {language} has: {topics}")
    return chosen


def _read_packaged(files: list[Path]) -> Iterator[Conversation]:
    for path in files:
        label = f"chatterbot:{path.parent.name}/{path.stem}"
        for index, entry in enumerate(_load_entries(path)):
            try:
                conversation = _conversation(path, f"{label}:{index}", index, entry)
            except DataError as error:
                # The package's data is not the user's to fix, and one mis-indented entry upstream (1.3.3 has one
                # in english/trivia.yml) should not make a whole language unusable. Ids keep their index.
                logger.warning("skipping a malformed chatterbot-corpus entry: %s", error)
                continue
            yield conversation


def _load_entries(path: Path) -> list[Any]:
    """The ``conversations`` list of a file; unreadable text or malformed YAML raises DataError."""
    document = load_yaml(path, read_text(path))
    conversations = document.get("conversations") if isinstance(document, dict) else None
    if not isinstance(conversations, list):
        raise DataError(path, 'expected a mapping with a "conversations" list')
    return conversations


def _conversation(path: Path, conversation_id: str, index: int, entry: Any) -> Conversation:
    if not isinstance(entry, list):
        raise DataError(path, f"conversations[{index}]: expected a list of strings, got {_kind(entry)}")
    turns = [Utterance("ab"[position % 2], _text(path, index, position, item)) for position, item in enumerate(entry)]
    return Conversation(conversation_id, merge_consecutive(turns))


def _text(path: Path, index: int, position: int, item: Any) -> str:
    if isinstance(item, str):
        return item
    # YAML reads an unquoted 1984 or 3.5 as a number and yes/no as a bool (an int subclass); keep their str().
    if isinstance(item, (int, float)):
        with suppress(ValueError):  # str() refuses an integer of more than 4300 digits (0xfff... is read fine)
            return str(item)
    raise DataError(path, f"conversations[{index}][{position}]: expected a string, got {_kind(item)}")


def _kind(value: Any) -> str:
    """How YAML wrote a value, for error messages: users think in YAML, not Python types."""
    if value is None:
        return "an empty item"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the single string {value[:60]!r} (each conversation is a '- - ' list)"
    try:
        shown = str(value)[:60]
    except ValueError:  # an integer of more than 4300 digits
        shown = "too long to show"
    return f"{type(value).__name__} {shown} (quote it)"
