"""Reading a log file: the two ways any file can fail (not readable, not UTF-8) as one-line DataErrors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chatbot.errors import DataError


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn an OSError or a decoding error raised inside the block into a DataError naming ``path``."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise DataError(path, f"not UTF-8 text ({error.reason})") from error
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror}") from error
