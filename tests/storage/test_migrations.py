"""Migrations on SQLite and a real Postgres: empty -> head, down and up again, and no drift from the models."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from chatbot.storage.engine import create_database_engine, open_database
from chatbot.storage.models import Base
from chatbot.storage.schema import alembic_config, downgrade, migrations_directory, upgrade, upgrade_to_head


def head_revision() -> str:
    engine = create_database_engine("sqlite://")
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None
    return head


def test_empty_database_upgrades_to_head_without_drift(database_url: str) -> None:
    engine = create_database_engine(database_url)
    upgrade_to_head(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert context.get_current_revision() == head_revision()
        assert compare_metadata(context, Base.metadata) == []
    tables = {"users", "conversations", "messages", "reply_provenance", "alembic_version"}
    assert tables <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    engine = create_database_engine(database_url)
    upgrade_to_head(engine)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade_to_head(engine)
    assert {"conversations", "messages"} <= set(inspect(engine).get_table_names())
    engine.dispose()


OLD_CONVERSATIONS = [  # id, channel, external id, started
    (1, "telegram", "7", "2026-01-01 10:00:00+00:00"),
    (2, "terminal", "ann", "2026-01-02 10:00:00+00:00"),
    (3, "telegram", "7", "2026-01-03 10:00:00+00:00"),
]
OLD_MESSAGES = [  # id, conversation, role, text, created
    (1, 1, "user", "hi", "2026-01-01 10:00:01+00:00"),
    (2, 1, "bot", "hello", "2026-01-01 10:00:02+00:00"),
    (3, 2, "user", "hey", "2026-01-02 10:00:01+00:00"),
]


def test_data_of_revision_0001_moves_to_head_and_back(database_url: str) -> None:
    """Conversations stored before users existed get a user per channel and id, their last activity, and bot
    replies their reply-to; downgrading gives the 0001 rows back unchanged."""
    engine = create_database_engine(database_url)
    upgrade(engine, "0001")
    with engine.begin() as connection:
        for row in OLD_CONVERSATIONS:
            connection.execute(
                text("INSERT INTO conversations (id, channel, external_id, started_at) VALUES (:i, :c, :e, :s)"),
                dict(zip("ices", row, strict=True)),
            )
        for row in OLD_MESSAGES:
            connection.execute(
                text("INSERT INTO messages (id, conversation_id, role, text, created_at) VALUES (:i, :c, :r, :t, :d)"),
                dict(zip("icrtd", row, strict=True)),
            )
    before = _rows(engine, "SELECT id, channel, external_id FROM conversations ORDER BY id")
    upgrade_to_head(engine)
    users = _rows(engine, "SELECT id, channel, external_id, blocked, display_name FROM users ORDER BY id")
    assert users == [(1, "telegram", "7", False, None), (2, "terminal", "ann", False, None)]
    assert _rows(engine, "SELECT id, user_id FROM conversations ORDER BY id") == [(1, 1), (2, 2), (3, 1)]
    activity = _rows(engine, "SELECT last_activity_at FROM conversations ORDER BY id")
    assert [str(moment)[:19] for (moment,) in activity] == [
        "2026-01-01 10:00:02",  # the newest message
        "2026-01-02 10:00:01",
        "2026-01-03 10:00:00",  # no messages: the start
    ]
    assert _rows(engine, "SELECT id, reply_to_id FROM messages ORDER BY id") == [(1, None), (2, 1), (3, None)]
    downgrade(engine, "0001")
    assert _rows(engine, "SELECT id, channel, external_id FROM conversations ORDER BY id") == before
    assert len(_rows(engine, "SELECT id FROM messages")) == 3  # no cascade took the messages with the tables
    engine.dispose()


def _rows(engine: Engine, query: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(query))]


def test_migrations_ship_inside_the_package() -> None:
    directory = migrations_directory()
    assert (directory / "env.py").is_file()
    assert any(directory.glob("versions/0001_*.py")) and any(directory.glob("versions/0002_*.py"))


@pytest.mark.reliability
def test_sqlite_runs_in_wal_mode_with_a_busy_timeout_and_private_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "chat.sqlite3"
    sessions = open_database(f"sqlite:///{path}")
    with sessions() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA busy_timeout")).scalar() == 5000
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
