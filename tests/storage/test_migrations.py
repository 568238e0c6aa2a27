"""Migrations on SQLite and a real Postgres: empty -> head, down and up again, and no drift from the models."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from chatbot.storage.engine import create_database_engine, open_database
from chatbot.storage.models import Base
from chatbot.storage.schema import alembic_config, downgrade, migrations_directory, upgrade_to_head


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
    assert {"conversations", "messages", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    engine = create_database_engine(database_url)
    upgrade_to_head(engine)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade_to_head(engine)
    assert {"conversations", "messages"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migrations_ship_inside_the_package() -> None:
    directory = migrations_directory()
    assert (directory / "env.py").is_file()
    assert any(directory.glob("versions/0001_*.py"))


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout_and_private_file(tmp_path: Path) -> None:
    path = tmp_path / "new" / "chat.sqlite3"
    sessions = open_database(f"sqlite:///{path}")
    with sessions() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA busy_timeout")).scalar() == 5000
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
