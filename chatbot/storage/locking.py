"""Locking: one conversation's messages are answered one after another even when several processes serve the bot.

On Postgres a session-level advisory lock, keyed by a stable 64-bit hash of the conversation key, is taken on its
own pooled connection before the user's turn is stored and released after the reply is stored, so a second worker
process that receives the next message of the same chat waits for it. Other keys never wait. A connection that
drops while holding the lock takes the lock with it (the server ends its session), so the unlock is then skipped.
SQLite serves one process (its writes are serialised anyway), so there the in-process lock of the dialogue manager
is the whole story and this lock does nothing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from chatbot.storage.engine import database_error

logger = logging.getLogger(__name__)
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
        try:
            connection = engine.connect()
        except DBAPIError as error:  # the server is down or unreachable
            raise database_error(engine.url, error) from error
        with connection:
            try:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                connection.commit()  # the lock belongs to the session, not to this little transaction
            except DBAPIError as error:
                raise database_error(engine.url, error) from error
            try:
                yield None
            finally:
                _unlock(connection, key)

    return advisory


def _unlock(connection: Connection, key: int) -> None:
    """Release the advisory lock ``key`` held by ``connection``, if its connection is still there to release it."""
    try:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        connection.commit()
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        # The server ended the session when the connection dropped, and released its locks with it.
        logger.warning("the connection holding conversation lock %s dropped; the server released the lock", key)
