"""Readers that turn dialogue logs and built-in corpora into Conversations; ``load_corpus`` picks one by name."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from chatbot.corpora.chitchat import read_chitchat
from chatbot.corpora.jsonl import read_jsonl
from chatbot.corpora.types import Conversation, Utterance
from chatbot.errors import DataError

BUILTIN_CORPORA = ("chitchat",)

__all__ = ["BUILTIN_CORPORA", "Conversation", "Utterance", "load_corpora", "load_corpus"]


def load_corpus(source: str) -> Iterator[Conversation]:
    """Read one data source: a built-in corpus name (``chitchat``) or a ``.jsonl`` file path."""
    if source in BUILTIN_CORPORA:
        return read_chitchat()
    path = Path(source)
    if not path.exists():
        raise DataError(path, f"no such file (built-in corpora: {', '.join(BUILTIN_CORPORA)})")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return read_jsonl(path)
    raise DataError(path, "unknown log format; expected a .jsonl file or a built-in corpus name")


def load_corpora(sources: Sequence[str]) -> list[Conversation]:
    """Read every source fully (so a bad line fails before any training starts)."""
    return [conversation for source in sources for conversation in load_corpus(source)]
