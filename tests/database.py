"""A scratch conversation database for tests of the layers above storage: the real store on a SQLite file in a
temporary folder (removed when nothing uses it any more), so concurrent transactions behave as they do in production."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

from chatbot.storage.contract import Clock, Transaction, utc_now
from chatbot.storage.engine import open_database
from chatbot.storage.records import StoredConversation
from chatbot.storage.store import sql_transaction
from chatbot.storage.transactions import engine_of


class ScratchDatabase:
    """A SQLite database at the newest schema, with its Transaction; ``clock`` stamps what is stored."""

    def __init__(self, clock: Clock = utc_now) -> None:
        folder = Path(tempfile.mkdtemp(prefix="chatbot-scratch-"))
        self.sessions = open_database(f"sqlite:///{folder / 'chat.sqlite3'}")
        self.transaction: Transaction = sql_transaction(self.sessions, clock)
        # The folder goes with the engine, which lives as long as anything holds this database's transaction.
        weakref.finalize(engine_of(self.sessions), shutil.rmtree, folder, True)

    def conversations(self) -> list[StoredConversation]:
        with self.transaction() as store:
            return list(store.conversations())
