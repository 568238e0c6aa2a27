"""The BYU Chit-Chat corpus (7,168 conversations, MIT), shipped offline by the ``chitchat-dataset`` wheel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from chatbot.corpora.jsonl import merge_consecutive
from chatbot.corpora.types import Conversation, Utterance
from chatbot.errors import ChatbotError


def chitchat_path() -> Path:
    """Where the installed wheel keeps ``dataset.json``."""
    try:
        import chitchat_dataset
    except ImportError as error:
        raise ChatbotError(
            "the chitchat corpus needs the chitchat-dataset package: pip install chitchat-dataset"
        ) from error
    return Path(chitchat_dataset.__file__).with_name("dataset.json")


def read_chitchat(path: Path | None = None) -> Iterator[Conversation]:
    """Yield the corpus' conversations in its key order; each message group of one sender is one turn."""
    with (path or chitchat_path()).open(encoding="utf-8") as handle:
        data = json.load(handle)
    for key, record in data.items():
        utterances = [
            Utterance(message["sender"], message["text"]) for group in record["messages"] for message in group
        ]
        yield Conversation(f"chitchat:{key}", merge_consecutive(utterances))
