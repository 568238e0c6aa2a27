"""User-facing errors: the CLI prints their message on one line and exits with code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path


def one_line(error: object) -> str:
    """An error's message, or any text, on one line: runs of whitespace, newlines included, become one space."""
    return " ".join(str(error).split())


class ChatbotError(Exception):
    """A problem the user can fix (bad input, missing model, unreachable database), not a bug."""


class DataError(ChatbotError):
    """A dialogue log that cannot be read; names the file and, where there is one, the line."""

    def __init__(self, path: str | Path, reason: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


class ModelError(ChatbotError):
    """A model directory that is missing, incomplete or of an unknown format."""


class StorageError(ChatbotError):
    """A database that cannot be opened, migrated, or written (locked, unreachable, full)."""
