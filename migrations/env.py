"""Alembic environment: runs migrations on the engine handed over by chatbot.storage.schema, or on the URL of
alembic.ini when the ``alembic`` command is used directly (developers: ``alembic revision --autogenerate``).

On SQLite, foreign keys are switched off while migrations run: batch mode alters a table by copying it and
dropping the original, and with foreign keys on, that drop would cascade-delete every row that refers to it
(a conversation's messages). The keys are checked once the migrations are done, and switched back on.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine, create_engine

from chatbot.storage.models import Base

config = context.config
engine = config.attributes.get("engine")
if not isinstance(engine, Engine):
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///chatbot-dev.sqlite3")


def _foreign_keys(connection: Connection, on: bool) -> None:
    """Switch SQLite's foreign key enforcement (only possible outside a transaction)."""
    connection.exec_driver_sql("PRAGMA foreign_keys=ON" if on else "PRAGMA foreign_keys=OFF")
    connection.commit()


with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _foreign_keys(connection, on=False)
    try:
        with connection.begin():
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=True,  # SQLite alters tables by copying them; batch mode does that for us
                compare_type=True,
            )
            context.run_migrations()
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all() if sqlite else []
            if broken:
                raise RuntimeError(f"migration left rows whose foreign keys point nowhere: {broken[:5]}")
    finally:
        if sqlite:
            _foreign_keys(connection, on=True)
