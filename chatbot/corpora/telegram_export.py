"""Telegram Desktop's JSON export (``result.json``) of one chat or a whole account, cut into conversations at pauses.

A one-chat export is ``{"name": ..., "type": ..., "id": 42, "messages": [...]}``; a whole-account export holds such
chats under ``{"chats": {"list": [...]}}`` (``left_chats`` is not read). An entry counts when it has
``"type": "message"`` and non-blank text: ``text`` is a string or a list of strings and entity objects
(``{"type": "link", "text": "..."}``), joined as written. Service entries and media without a caption are skipped.
The speaker is ``from_id`` (else ``from``); consecutive messages of one speaker become one turn. A pause of more than
``session_gap_minutes`` between two counted messages starts a new conversation with id
``telegram:<chat id>:<id of its first message>``, so a split by id spreads a long chat over train, valid and test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeGuard

from chatbot.corpora.files import read_text
from chatbot.corpora.jsonl import merge_consecutive, parse_json
from chatbot.corpora.types import Conversation, Utterance
from chatbot.errors import DataError
from chatbot.text.normalize import valid_unicode


@dataclass(frozen=True)
class _Message:
    id: int | str
    speaker: str
    text: str
    seconds: float  # since the epoch; only differences are used


def read_telegram_export(path: Path, session_gap_minutes: float = 60.0) -> Iterator[Conversation]:
    """Yield each chat's sessions in export order; pass ``math.inf`` as the gap to keep every chat whole."""
    for chat in _chats(path, parse_json(path, read_text(path))):
        chat_id = chat["id"]
        parsed = (_parse_message(path, chat_id, position, entry) for position, entry in enumerate(chat["messages"]))
        messages = [message for message in parsed if message is not None]
        for session in _sessions(messages, session_gap_minutes * 60):
            turns = merge_consecutive([Utterance(message.speaker, message.text) for message in session])
            yield Conversation(valid_unicode(f"telegram:{chat_id}:{session[0].id}"), turns)


def _chats(path: Path, export: Any) -> list[dict[str, Any]]:
    """The export's chats, each checked to have an ``id`` and a ``messages`` list."""
    if isinstance(export, dict) and "messages" in export:
        chats: Any = [export]
    elif isinstance(export, dict) and isinstance(export.get("chats"), dict) and "list" in export["chats"]:
        chats = export["chats"]["list"]
    else:
        raise DataError(
            path, 'not a Telegram Desktop export: expected "messages" (one chat) or "chats": {"list": [...]} (account)'
        )
    if not isinstance(chats, list):
        raise DataError(path, '"chats"."list" must be a list of chats')
    for position, chat in enumerate(chats, start=1):
        if not (isinstance(chat, dict) and isinstance(chat.get("messages"), list) and _is_id(chat.get("id"))):
            raise DataError(path, f'chat #{position}: expected an object with an "id" and a "messages" list')
    return chats


def _parse_message(path: Path, chat_id: int | str, position: int, entry: Any) -> _Message | None:
    """The message as a turn, or None for service entries and media without text."""
    message_id = entry.get("id") if isinstance(entry, dict) else None
    if not _is_id(message_id):
        raise DataError(path, f'chat {_shown(chat_id)}, message #{position + 1}: expected an object with an "id"')
    where = f"chat {_shown(chat_id)}, message {_shown(message_id)}"
    if entry.get("type") != "message":
        return None  # joins, pins, calls, title changes: nobody said anything
    text = _plain_text(path, where, entry.get("text", ""))
    if not text.strip():
        return None  # a photo, sticker or voice message without a caption
    speaker = entry.get("from_id")
    if speaker is None:
        speaker = entry.get("from")  # exports before from_id existed name the sender only
    if not _is_id(speaker):
        raise DataError(path, f'{where}: expected a "from_id" or "from" sender')
    return _Message(message_id, str(speaker), text, _seconds(path, where, entry))


def _is_id(value: Any) -> TypeGuard[int | str]:
    """Ids and senders are numbers or strings; a JSON boolean would pass isinstance(int) but is neither."""
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _shown(value: int | str) -> str:
    """An id as an error message shows it: quoted and escaped when it would break the message's one line."""
    return value if isinstance(value, str) and value.isprintable() else repr(value)


def _plain_text(path: Path, where: str, text: Any) -> str:
    """Join a message's text fragments; entities (links, bold, mentions) contribute the text they display."""
    if isinstance(text, str):
        return text
    if isinstance(text, list):
        parts = [part.get("text") if isinstance(part, dict) else part for part in text]
        strings = [part for part in parts if isinstance(part, str)]
        if len(strings) == len(parts):
            return "".join(strings)
    raise DataError(path, f'{where}: "text" must be a string or a list of strings and {{"text": "..."}} entities')


def _seconds(path: Path, where: str, entry: dict[str, Any]) -> float:
    """When a message was sent, in seconds since the epoch."""
    try:
        # date_unixtime is absolute; date is local wall-clock time, which jumps an hour at DST changes.
        if "date_unixtime" in entry:
            return float(entry["date_unixtime"])
        sent = datetime.fromisoformat(entry["date"])
        # A naive date is read as UTC, not as this machine's zone: gaps then never depend on where the reader runs.
        return sent.replace(tzinfo=sent.tzinfo or timezone.utc).timestamp()
    except (KeyError, TypeError, ValueError, OverflowError) as error:  # OverflowError: beyond what a float holds
        raise DataError(path, f'{where}: expected an ISO "date" or a "date_unixtime"') from error


def _sessions(messages: list[_Message], gap_seconds: float) -> Iterator[list[_Message]]:
    """Cut a chat where consecutive messages lie more than ``gap_seconds`` apart."""
    session: list[_Message] = []
    for message in messages:
        if session and message.seconds - session[-1].seconds > gap_seconds:
            yield session
            session = []
        session.append(message)
    if session:
        yield session
