"""CSV and TSV files of (context, response) pairs, one pair per row.

With a header row, the columns named ``context`` and ``response`` are used (any order, any other columns ignored),
and an optional ``conversation_id`` column keeps the pairs of one conversation on the same side of the train/valid/
test split. Without a header, the first two columns are context and response. ``.tsv`` files are tab-separated.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from chatbot.corpora.files import checked_lines, open_text, reading
from chatbot.corpora.jsonl import merge_consecutive
from chatbot.corpora.types import Conversation, Utterance
from chatbot.errors import DataError

HEADER = ("context", "response")


def read_pairs_table(path: Path) -> Iterator[Conversation]:
    """Yield each row as a two-turn conversation; a malformed row raises DataError naming file and line."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with reading(path), open_text(path, newline="") as handle:
        yield from _conversations(path, _records(path, handle, delimiter))


def _records(path: Path, handle: TextIO, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """The rows that are not blank, each with the line it ends on; a row csv cannot parse is a DataError."""
    # strict: an unclosed quote is an error, not a row that swallows the rest of the file
    reader = csv.reader(checked_lines(path, handle), delimiter=delimiter, strict=True)
    while True:
        start = reader.line_num + 1  # a quoted cell may span lines: name the line where the bad row starts
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            kind = "TSV" if delimiter == "\t" else "CSV"
            raise DataError(path, f"malformed {kind}: {error}", start) from error
        if any(cell.strip() for cell in row):
            yield reader.line_num, row


def _conversations(path: Path, records: Iterator[tuple[int, list[str]]]) -> Iterator[Conversation]:
    columns: tuple[int, int, int | None] = (0, 1, None)
    for line, row in records:
        if line == 1 and {"context", "response"} <= {cell.strip().lower() for cell in row}:
            columns = _header_columns(row)
            continue
        context_column, response_column, id_column = columns
        if len(row) <= max(context_column, response_column):
            raise DataError(path, f"expected {max(context_column, response_column) + 1} columns, got {len(row)}", line)
        conversation_id = row[id_column].strip() if id_column is not None and id_column < len(row) else ""
        turns = [Utterance("a", row[context_column]), Utterance("b", row[response_column])]
        yield Conversation(conversation_id or f"{path.name}:{line}", merge_consecutive(turns))


def _header_columns(row: list[str]) -> tuple[int, int, int | None]:
    names = [cell.strip().lower() for cell in row]
    id_column = names.index("conversation_id") if "conversation_id" in names else None
    return names.index("context"), names.index("response"), id_column
