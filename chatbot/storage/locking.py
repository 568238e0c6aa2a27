"""Locking: one conversation's messages are answered one after another even when several processes serve the bot.

On Postgres a session-level advisory lock, keyed by a stable 64-bit hash of the conversation key, is taken on its
own pooled connection before the user's turn is stored and released after the reply is stored, so a second worker
process that receives the next message of the same chat waits for it. Other keys never wait. SQLite serves one
process (its writes are serialised anyway), so there the in-process lock of the dialogue manager is the whole story
and this lock does nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import Engine, text

ConversationLock = Callable[[str, str], AbstractContextManager[object]]


def lock_key(channel: str, external_id: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock``, the same in every process (unlike ``hash``)."""
    digest = hashlib.blake2b(f"{channel}\0{external_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def conversation_lock(engine: Engine) -> ConversationLock:
    """The cross-process lock for ``engine``'s database: an advisory lock on Postgres, nothing elsewhere."""
    if engine.dialect.name != "postgresql":
        return lambda _channel, _external_id: nullcontext()

    @contextmanager
    def advisory(channel: str, external_id: str) -> Iterator[object]:
        key = lock_key(channel, external_id)
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            connection.commit()  # the lock belongs to the session, not to this little transaction
            try:
                yield None
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()

    return advisory
