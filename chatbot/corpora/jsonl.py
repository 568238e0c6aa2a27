"""JSONL dialogue logs: one conversation per line, the format ``chatbot export`` writes and ``train`` reads.

Each line is a JSON object::

    {"id": "c1", "turns": [{"speaker": "alice", "text": "hi"}, {"speaker": "bob", "text": "hello!"}]}

``id`` is optional (the file name and line number stand in). ``turns`` may also be a list of strings, taken as
alternating speakers. Consecutive turns of one speaker are merged into one turn.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from chatbot.corpora.files import checked_lines, open_text, reading
from chatbot.corpora.types import Conversation, Utterance
from chatbot.errors import DataError
from chatbot.text.normalize import normalize_text, valid_unicode


def read_jsonl(path: Path) -> Iterator[Conversation]:
    """Yield the conversations of a JSONL file; a malformed line raises DataError naming file and line."""
    with reading(path), open_text(path) as handle:
        for number, line in enumerate(checked_lines(path, handle), start=1):
            if line.strip():
                yield _parse_line(path, number, line)


def parse_json(path: Path, text: str, line: int | None = None) -> Any:
    """``json.loads`` whose every failure is a DataError; ``line`` is the file's line when ``text`` is one line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        where = error.lineno if line is None else line
        raise DataError(path, f"invalid JSON: {error.msg} (column {error.colno})", where) from error
    except ValueError as error:  # an integer beyond sys.get_int_max_str_digits() (4300 digits)
        raise DataError(path, "invalid JSON: a number too long to read", line) from error
    except RecursionError as error:  # the decoder recurses once per level of [ and {
        raise DataError(path, "invalid JSON: nested too deeply", line) from error


def _parse_line(path: Path, number: int, line: str) -> Conversation:
    record = parse_json(path, line, number)
    if not isinstance(record, dict) or not isinstance(record.get("turns"), list):
        raise DataError(path, 'expected an object with a "turns" list', number)
    turns = [_parse_turn(path, number, index, turn) for index, turn in enumerate(record["turns"])]
    conversation_id = record.get("id", f"{path.name}:{number}")
    if not isinstance(conversation_id, (str, int)):
        raise DataError(path, '"id" must be a string or a number', number)
    return Conversation(valid_unicode(str(conversation_id)), merge_consecutive(turns))


def _parse_turn(path: Path, number: int, index: int, turn: Any) -> Utterance:
    if isinstance(turn, str):
        return Utterance("ab"[index % 2], turn)
    if isinstance(turn, dict) and isinstance(turn.get("text"), str):
        speaker = turn.get("speaker", "ab"[index % 2])
        if isinstance(speaker, (str, int)):
            return Utterance(str(speaker), turn["text"])
    raise DataError(path, f'turn {index + 1}: expected a string or {{"speaker": ..., "text": "..."}}', number)


def merge_consecutive(turns: list[Utterance]) -> tuple[Utterance, ...]:
    """Normalise each utterance and join consecutive ones of one speaker (people send several short messages in a
    row); utterances with nothing left after normalisation are dropped."""
    merged: list[Utterance] = []
    for turn in turns:
        text = normalize_text(valid_unicode(turn.text))
        if not text:
            continue
        speaker = valid_unicode(turn.speaker)
        if merged and merged[-1].speaker == speaker:
            merged[-1] = Utterance(speaker, f"{merged[-1].text} {text}")
        else:
            merged.append(Utterance(speaker, text))
    return tuple(merged)


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write one JSON object per line, atomically: readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    count = 0
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return count
