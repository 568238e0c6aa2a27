"""Readers that turn dialogue logs and built-in corpora into Conversations; ``load_corpus`` picks one by name.

A source is one of:
  - ``chitchat``: the BYU Chit-Chat corpus; ``chatterbot:english`` or ``chatterbot:english/greetings``: the
    chatterbot-corpus YAML dialogues (both ship offline as Python packages);
  - a database URL (``sqlite:///bot.db``, ``postgresql://...``): the bot's own stored conversations;
  - a file, by extension: ``.jsonl`` conversations, ``.csv``/``.tsv`` (context, response) pairs, ``.yml``/``.yaml``
    in the chatterbot-corpus format, ``.json`` a Telegram Desktop chat export (``result.json``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from chatbot.corpora.chatterbot import read_chatterbot_corpus, read_chatterbot_yaml
from chatbot.corpora.chitchat import read_chitchat
from chatbot.corpora.database import is_database_url, read_database
from chatbot.corpora.jsonl import read_jsonl
from chatbot.corpora.pairs_table import read_pairs_table
from chatbot.corpora.telegram_export import read_telegram_export
from chatbot.corpora.types import Conversation, Utterance
from chatbot.errors import DataError

BUILTIN_CORPORA = ("chitchat", "chatterbot:LANGUAGE[/TOPIC]")
FILE_READERS: dict[str, Callable[[Path], Iterator[Conversation]]] = {
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".csv": read_pairs_table,
    ".tsv": read_pairs_table,
    ".yml": read_chatterbot_yaml,
    ".yaml": read_chatterbot_yaml,
    ".json": read_telegram_export,
}

__all__ = ["BUILTIN_CORPORA", "Conversation", "Utterance", "is_public_corpus", "load_corpora", "load_corpus"]


def is_public_corpus(source: str) -> bool:
    """Whether ``source`` names a built-in public corpus, whose text may be repeated to anyone (not a user's logs)."""
    return source == "chitchat" or source.startswith("chatterbot:")


def load_corpus(source: str) -> Iterator[Conversation]:
    """Read one data source (see the module docstring for what a source may be)."""
    if source == "chitchat":
        return read_chitchat()
    if source.startswith("chatterbot:"):
        return read_chatterbot_corpus(source.removeprefix("chatterbot:"))
    if is_database_url(source):
        return read_database(source)
    path = Path(source)
    if not path.exists():
        raise DataError(path, f"no such file (built-in corpora: {', '.join(BUILTIN_CORPORA)})")
    reader = FILE_READERS.get(path.suffix.lower())
    if reader is None:
        raise DataError(path, f"unknown log format; expected one of {', '.join(FILE_READERS)} or a corpus name")
    return reader(path)


def load_corpora(sources: Sequence[str]) -> list[Conversation]:
    """Read every source fully (so a bad line fails before any training starts)."""
    return [conversation for source in sources for conversation in load_corpus(source)]
