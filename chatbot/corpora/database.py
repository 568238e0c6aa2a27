"""The bot's own conversation database as training data: what ``chatbot export`` would write, read directly."""

from __future__ import annotations

from collections.abc import Iterator

from chatbot.corpora.jsonl import merge_consecutive
from chatbot.corpora.types import Conversation, Utterance
from chatbot.storage.engine import open_database
from chatbot.storage.store import sql_transaction


def is_database_url(source: str) -> bool:
    """True for SQLAlchemy URLs such as ``sqlite:///bot.db`` or ``postgresql://host/db``."""
    scheme, separator, _ = source.partition("://")
    return bool(separator) and scheme.replace("+", "").isalnum()


def read_database(url: str) -> Iterator[Conversation]:
    """Every stored conversation, ids as ``chatbot export`` writes them, so both land on the same split side."""
    transaction = sql_transaction(open_database(url))
    with transaction() as store:
        stored = list(store.conversations())
    for conversation in stored:
        turns = [Utterance(turn.role.value, turn.text) for turn in conversation.turns]
        yield Conversation(conversation.export_id, merge_consecutive(turns))
