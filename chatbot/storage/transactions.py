"""Transactions: a session opened, begun and committed with the database's trouble as a one-line StorageError, and
a piece of work run again in a new transaction when the connection dropped before the commit.

``session_transaction`` is the boundary store.py's ``sql_transaction`` builds on; ``run_transaction`` retries any
transaction factory, whatever store it hands out; ``engine_of`` is the engine a session factory binds to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from chatbot.errors import StorageError
from chatbot.storage import engine

logger = logging.getLogger(__name__)
Store = TypeVar("Store")
Result = TypeVar("Result")
RETRY_DELAYS_S = (0.05, 0.25)  # pauses before running a transaction again whose connection dropped; then give up


class ConnectionDropped(StorageError):
    """The connection to the database dropped before the transaction's commit was sent: the server rolled all of
    it back, so running it again stores nothing twice."""


def engine_of(session_factory: sessionmaker[Session]) -> Engine:
    """The engine ``session_factory`` opens its sessions on (what ``open_database`` bound it to)."""
    bound: Engine = session_factory.kw["bind"]
    return bound


@contextmanager
def session_transaction(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session, begun, committed when the block ends (rolled back on an exception). The database's trouble
    (locked, unreachable, disk full, connection dropped) becomes a one-line StorageError; ConnectionDropped when the
    connection dropped before the commit."""
    committing = False
    try:
        with session_factory.begin() as session:
            yield session
            committing = True  # a drop from here on may come after the server committed: not known to be undone
    except DBAPIError as error:
        if not (isinstance(error, OperationalError | InterfaceError) or error.connection_invalidated):
            raise  # a constraint or a statement the server refused: a bug, with its traceback
        failure = engine.database_error(engine_of(session_factory).url, error)
        if error.connection_invalidated and not committing:
            raise ConnectionDropped(str(failure)) from error
        raise failure from error
    except PoolTimeoutError as error:  # every pooled connection stayed busy for the pool's whole timeout
        url = engine.describe(engine_of(session_factory).url)
        reason = str(error).split(" (Background on this error")[0]
        raise StorageError(f"database {url}: too busy, no free connection ({reason})") from error


def run_transaction(
    transaction: Callable[[], AbstractContextManager[Store]], work: Callable[[Store], Result]
) -> Result:
    """``work``'s result, run in a transaction of its own, and run again in a new one after a short pause while
    the connection drops before the commit (a server restarted or failed over, a connection cut): each such try
    was rolled back whole. Any other failure, and a drop on the last try, is raised."""
    for delay in RETRY_DELAYS_S:
        try:
            with transaction() as store:
                return work(store)
        except ConnectionDropped as error:
            logger.warning("%s; trying again in %g s", error, delay)
            time.sleep(delay)
    with transaction() as store:
        return work(store)
