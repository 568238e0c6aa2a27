"""Engines: a SQLAlchemy URL in, a configured Engine out (SQLite in WAL mode with a busy timeout; Postgres via
psycopg 3), and the schema brought to the newest migration before use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from chatbot.errors import StorageError
from chatbot.storage.schema import upgrade_to_head

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_POOL_TIMEOUT_S = 60.0  # how long a thread waits for its turn at the process's one SQLite connection


def default_database_url(data_dir: Path) -> str:
    """The zero-setup default: a SQLite file in the user's data directory."""
    return f"sqlite:///{data_dir / 'chatbot.sqlite3'}"


def parse_url(url: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` means the psycopg 3 driver this package installs."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise StorageError(
            f"invalid database URL {url!r}: expected e.g. sqlite:///chat.db or postgresql://..."
        ) from error
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_database_engine(url: str) -> Engine:
    """An Engine for ``url``; SQLite files get their directory created (owner-only) and WAL pragmas."""
    parsed = parse_url(url)
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        _prepare_sqlite_file(parsed)
        if parsed.database in (None, "", ":memory:"):
            options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        else:
            # One connection per process: SQLite lets one transaction write at a time anyway, and threads queued
            # on the pool take turns at once, where threads queued on SQLite's lock poll it with sleeps of up to
            # 100 ms (or give up after the busy timeout). The busy timeout still covers other processes.
            options = {"pool_size": 1, "max_overflow": 0, "pool_timeout": SQLITE_POOL_TIMEOUT_S}
            # sqlite3's own timeout is SQLite's busy timeout: no PRAGMA built from a number needed.
            options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        # A restarted or failed-over server, or an idle connection cut, leaves dead connections in the pool: test
        # each as it is checked out (one round trip) and reconnect, rather than fail the next message with it.
        options = {"pool_pre_ping": True}
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ImportError, ArgumentError) as error:
        raise StorageError(f"cannot use database {describe(parsed)}: {error}") from error
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def open_database(url: str) -> sessionmaker[Session]:
    """Connect, migrate to the newest schema, and return a session factory; failures become StorageError."""
    engine = create_database_engine(url)
    try:
        upgrade_to_head(engine)
    except SQLAlchemyError as error:
        engine.dispose()
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise StorageError(f"cannot open database {describe(engine.url)}: {reason}") from error
    return sessionmaker(engine, expire_on_commit=False)


def describe(url: URL) -> str:
    """The URL as safe to show: the password hidden."""
    return url.render_as_string(hide_password=True)


def database_error(url: URL, error: DBAPIError) -> StorageError:
    """A one-line StorageError for a statement or connection that failed on the database at ``url``: the URL with
    its password hidden and the first line of the driver's message."""
    reason = str(error.orig or error).strip().splitlines()[0]
    waited = SQLITE_BUSY_TIMEOUT_MS / 1000
    hint = f" (another process holds a write lock; waited {waited:g} s)" if "locked" in reason else ""
    return StorageError(f"database {describe(url)}: {reason}{hint}")


def _prepare_sqlite_file(url: URL) -> None:
    if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
        path = Path(url.database).expanduser()
        try:
            if not path.parent.exists():
                path.parent.mkdir(parents=True, mode=0o700)
            if not path.exists():
                # Conversations are private: create the file owner-only before SQLite does with the umask.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as error:
            raise StorageError(f"cannot create the SQLite database {path}: {error.strerror}") from error


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; a crash loses no committed WAL frame
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
