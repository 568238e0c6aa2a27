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

from chatbot.corpora.files import reading
from chatbot.corpora.jsonl import merge_consecutive
from chatbot.corpora.types import Conversation, Utterance
from chatbot.errors import DataError

HEADER = ("context", "response")


def read_pairs_table(path: Path) -> Iterator[Conversation]:
    """Yield each row as a two-turn conversation; a malformed row raises DataError naming file and line."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with reading(path), path.open(encoding="utf-8", newline="") as handle:
            yield from _rows(path, handle, delimiter)
    except csv.Error as error:
        raise DataError(path, f"malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {error}") from error


def _rows(path: Path, handle: TextIO, delimiter: str) -> Iterator[Conversation]:
    reader = csv.reader(handle, delimiter=delimiter, strict=True)  # an unclosed quote is an error, not a merged row
    columns: tuple[int, int, int | None] = (0, 1, None)
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
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
