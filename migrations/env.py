"""Alembic environment: runs migrations on the engine handed over by chatbot.storage.schema, or on the URL of
alembic.ini when the ``alembic`` command is used directly (developers: ``alembic revision --autogenerate``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine, create_engine

from chatbot.storage.models import Base

config = context.config
engine = config.attributes.get("engine")
if not isinstance(engine, Engine):
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///chatbot-dev.sqlite3")

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite alters tables by copying them; batch mode does that for us
        compare_type=True,
    )
    context.run_migrations()
