"""Alembic migrations: the only way the schema changes. Shipped in the package as chatbot.migrations."""
