"""A scratch conversation database for tests of the layers above storage: the real store on in-memory SQLite."""

from __future__ import annotations

from chatbot.storage.engine import open_database
from chatbot.storage.store import Clock, StoredConversation, Transaction, sql_transaction, utc_now


class ScratchDatabase:
    """An in-memory SQLite database at the newest schema, with its Transaction; ``clock`` stamps what is stored."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self.sessions = open_database("sqlite://")
        self.transaction: Transaction = sql_transaction(self.sessions, clock)

    def conversations(self) -> list[StoredConversation]:
        with self.transaction() as store:
            return list(store.conversations())
