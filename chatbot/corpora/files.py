"""Reading a log file as text: a file that cannot be read, or holds bytes that are not UTF-8, is a one-line DataError.

A UTF-8 byte-order mark (Excel and Notepad write one) is dropped. A NUL byte counts as not UTF-8: text never holds
one, and UTF-16 without a byte-order mark is mostly NULs that would otherwise read as spaced-out words. The readers
that go line by line open the file with ``open_text`` and iterate ``checked_lines``, so a stray byte is reported
with its line; whole-file readers use ``read_text``, which does the same for the whole text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from chatbot.errors import DataError

# A NUL, or what errors="surrogateescape" turns a byte that is not UTF-8 into (strict UTF-8 never decodes to these).
_NOT_TEXT = re.compile("[\x00\udc80-\udcff]")
_UTF16_MARKS = ("\udcff\udcfe", "\udcfe\udcff")


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn an OSError raised inside the block (no such file, a directory, no permission) into a DataError."""
    try:
        yield
    except OSError as error:
        raise DataError(path, f"cannot read: {error.strerror or error}") from error


def open_text(path: Path, newline: str | None = None) -> TextIO:
    """Open ``path`` for reading as UTF-8; bytes that are not UTF-8 stay escaped for ``checked_lines`` to find."""
    return path.open(encoding="utf-8-sig", errors="surrogateescape", newline=newline)


def checked_lines(path: Path, handle: TextIO) -> Iterator[str]:
    """The lines of ``handle`` (from ``open_text``); one holding a byte that is not UTF-8 raises DataError."""
    for number, line in enumerate(handle, start=1):
        found = _NOT_TEXT.search(line)
        if found is not None:
            raise DataError(path, _not_utf8(line, found.start(), number), number)
        yield line


def read_text(path: Path) -> str:
    """The whole file as UTF-8 text; an unreadable file or a byte that is not UTF-8 raises DataError."""
    with reading(path), open_text(path) as handle:
        text = handle.read()
    found = _NOT_TEXT.search(text)
    if found is not None:
        line = text.count("\n", 0, found.start()) + 1
        raise DataError(path, _not_utf8(text, found.start(), line), line)
    return text


def _not_utf8(text: str, index: int, line: int) -> str:
    # Windows tools (PowerShell's >, Notepad's "Unicode") write UTF-16: say so rather than name a byte.
    if line == 1 and index == 0 and text.startswith(_UTF16_MARKS):
        return "not UTF-8 text but UTF-16; save it as UTF-8"
    if text[index] == "\x00":
        return "not UTF-8 text: a NUL byte (UTF-16 without a byte-order mark?); save it as UTF-8"
    return f"not UTF-8 text (byte 0x{ord(text[index]) - 0xDC00:02x}); save it as UTF-8"
