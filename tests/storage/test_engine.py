"""Engines: URL handling and clear errors for databases that cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.errors import StorageError
from chatbot.storage.engine import open_database, parse_url


def test_plain_postgresql_urls_use_psycopg3() -> None:
    assert parse_url("postgresql://u:p@localhost/db").drivername == "postgresql+psycopg"
    assert parse_url("sqlite:///x.db").drivername == "sqlite"


def test_invalid_url_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="invalid database URL"):
        open_database("not a url")


def test_unknown_driver_is_a_storage_error() -> None:
    with pytest.raises(StorageError, match="cannot use database"):
        open_database("nosuchdb://host/db")


def test_unreachable_postgres_is_a_storage_error_without_the_password() -> None:
    with pytest.raises(StorageError) as caught:
        open_database("postgresql://bob:s3cret@127.0.0.1:1/chat?connect_timeout=2")
    assert "cannot open database" in str(caught.value)
    assert "s3cret" not in str(caught.value)


def test_unwritable_sqlite_location_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="cannot create"):
        open_database(f"sqlite:///{blocker}/sub/chat.db")
