"""Schema migrations through Alembic: the scripts ship as ``chatbot.migrations``, so they work from a wheel too."""

from __future__ import annotations

import importlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine


def migrations_directory() -> Path:
    """Where the Alembic environment lives (the repository's migrations/ or the installed package's copy)."""
    # Imported by name: the package is mapped from the top-level migrations/ folder, which type checkers don't see.
    package = importlib.import_module("chatbot.migrations")
    return Path(str(package.__file__)).parent


def alembic_config(engine: Engine) -> Config:
    """An Alembic Config that runs against ``engine`` without an alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    config.attributes["engine"] = engine
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Apply every migration the database does not have yet."""
    command.upgrade(alembic_config(engine), "head")


def upgrade(engine: Engine, revision: str) -> None:
    """Migrate up to ``revision`` (tests of a migration start from the one before it)."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)
