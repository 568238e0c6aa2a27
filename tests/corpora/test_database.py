"""The bot's own database as training data, on SQLite and a real Postgres, with the ids `chatbot export` writes."""

from __future__ import annotations

from chatbot.corpora import load_corpus
from chatbot.corpora.database import is_database_url
from chatbot.dialogue.generator import EchoGenerator
from chatbot.dialogue.manager import DialogueManager
from chatbot.storage.engine import open_database
from chatbot.storage.export import conversation_record
from chatbot.storage.store import sql_transaction


def test_database_urls_are_recognised() -> None:
    assert is_database_url("sqlite:///bot.db")
    assert is_database_url("postgresql+psycopg://u@h/db")
    assert not is_database_url("logs/chat.jsonl")
    assert not is_database_url("chatterbot:english")


def test_stored_conversations_read_back_as_training_data(database_url: str) -> None:
    transaction = sql_transaction(open_database(database_url))
    manager = DialogueManager(EchoGenerator(), transaction)
    manager.respond("telegram", "7", "hello")
    manager.respond("telegram", "7", "how are you?")
    manager.respond("terminal", "ann", "/reset")
    manager.respond("terminal", "ann", "hi")
    conversations = list(load_corpus(database_url))
    with transaction() as store:
        exported_ids = [conversation_record(c)["id"] for c in store.conversations() if c.turns]
    assert [c.id for c in conversations if c.turns] == exported_ids
    telegram = next(c for c in conversations if c.id.startswith("telegram:7:"))
    assert [(t.speaker, t.text) for t in telegram.turns] == [
        ("user", "hello"),
        ("bot", "echo: hello"),
        ("user", "how are you?"),
        ("bot", "echo: how are you?"),
    ]
