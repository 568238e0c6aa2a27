"""Telegram Desktop export: one chat and a whole account, entities, skipped entries, sessions, and every error."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from chatbot.corpora.telegram_export import read_telegram_export
from chatbot.corpora.types import Utterance
from chatbot.errors import DataError


def message(message_id: int, minutes: int, sender: str, text: Any, **extra: Any) -> dict[str, Any]:
    """A text message sent ``minutes`` after 10:00 on 5 January 2023."""
    hour, minute = divmod(600 + minutes, 60)
    return {
        "id": message_id,
        "type": "message",
        "date": f"2023-01-05T{hour:02d}:{minute:02d}:00",
        "from": sender.title(),
        "from_id": sender,
        "text": text,
        **extra,
    }


def chat(chat_id: int, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "Alice", "type": "personal_chat", "id": chat_id, "messages": messages}


def write(tmp_path: Path, export: Any) -> Path:
    path = tmp_path / "result.json"
    path.write_text(json.dumps(export, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def test_one_chat_joins_entities_merges_speakers_and_skips_service_and_media(tmp_path: Path) -> None:
    messages = [
        {"id": 1, "type": "service", "date": "2023-01-05T10:00:00", "actor_id": "user1", "action": "pin_message"},
        message(2, 0, "user1", "hi"),
        message(3, 1, "user1", "  are you  there?"),
        message(4, 2, "user2", "", photo="photos/photo_1.jpg"),
        message(5, 2, "user2", "", media_type="sticker", sticker_emoji="👋"),
        message(
            6,
            3,
            "user2",
            ["see ", {"type": "link", "text": "https://example.org"}, " ", {"type": "bold", "text": "now"}],
        ),
        {**message(7, 4, "user1", "thanks"), "from_id": None},  # an old export names the sender only
    ]
    (conversation,) = read_telegram_export(write(tmp_path, chat(42, messages)))
    assert conversation.id == "telegram:42:2"
    assert conversation.turns == (
        Utterance("user1", "hi are you there?"),
        Utterance("user2", "see https://example.org now"),
        Utterance("User1", "thanks"),
    )


def test_a_pause_longer_than_the_gap_starts_a_new_conversation(tmp_path: Path) -> None:
    messages = [
        message(10, 0, "user1", "morning"),
        message(11, 59, "user2", "morning!"),  # 59 minutes: same session
        message(12, 120, "user1", "lunch?"),  # 61 minutes later: a new one
        message(13, 121, "user2", "sure"),
    ]
    path = write(tmp_path, chat(7, messages))
    assert [conversation.id for conversation in read_telegram_export(path)] == ["telegram:7:10", "telegram:7:12"]
    assert [conversation.id for conversation in read_telegram_export(path, session_gap_minutes=30)] == [
        "telegram:7:10",
        "telegram:7:11",
        "telegram:7:12",
    ]
    assert len(list(read_telegram_export(path, session_gap_minutes=math.inf))) == 1


def test_unix_time_is_preferred_to_the_local_date(tmp_path: Path) -> None:
    # Local dates 3 hours apart, unix times 1 minute apart (say, the clocks changed): one session.
    messages = [
        message(1, 0, "user1", "hi", date_unixtime="1672912800"),
        message(2, 180, "user2", "hello", date_unixtime="1672912860"),
    ]
    assert len(list(read_telegram_export(write(tmp_path, chat(1, messages))))) == 1


def test_whole_account_export_reads_every_chat(tmp_path: Path) -> None:
    export = {
        "about": "Here is the data you requested.",
        "personal_information": {"user_id": 1},
        "chats": {
            "about": "This page lists all chats from this export.",
            "list": [
                chat(100, [message(1, 0, "user1", "hi bob"), message(2, 1, "user2", "hi")]),
                chat(200, [message(5, 0, "user1", "hi carol"), message(6, 1, "user3", "hey")]),
            ],
        },
    }
    conversations = list(read_telegram_export(write(tmp_path, export)))
    assert [conversation.id for conversation in conversations] == ["telegram:100:1", "telegram:200:5"]
    assert conversations[1].turns == (Utterance("user1", "hi carol"), Utterance("user3", "hey"))


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_text('{\n "id": 1,\n "messages": [\n  {"id": 1,]\n}\n', encoding="utf-8")
    with pytest.raises(DataError) as caught:
        list(read_telegram_export(path))
    assert caught.value.line == 4
    assert str(caught.value).startswith(f"{path}:4: invalid JSON")


@pytest.mark.parametrize(
    ("export", "reason"),
    [
        ({"turns": ["hi"]}, "not a Telegram Desktop export"),
        (["hi"], "not a Telegram Desktop export"),
        ({"chats": {"about": "no list"}}, "not a Telegram Desktop export"),
        ({"chats": {"list": "oops"}}, '"list" must be a list'),
        ({"chats": {"list": [{"id": 1}]}}, 'chat #1: expected an object with an "id" and a "messages" list'),
        ({"name": "no id", "messages": []}, 'chat #1: expected an object with an "id"'),
        (chat(9, ["hi"]), 'chat 9, message #1: expected an object with an "id"'),
        (chat(9, [message(3, 0, "user1", 42)]), 'chat 9, message 3: "text" must be'),
        (chat(9, [message(3, 0, "user1", ["a", {"type": "bold"}])]), 'chat 9, message 3: "text" must be'),
        (chat(9, [message(3, 0, "user1", "hi", date="yesterday")]), 'chat 9, message 3: expected an ISO "date"'),
        (chat(9, [{**message(3, 0, "user1", "hi"), "from_id": None, "from": None}]), "chat 9, message 3: expected a"),
    ],
)
def test_malformed_exports_name_the_file_and_the_message(tmp_path: Path, export: Any, reason: str) -> None:
    path = write(tmp_path, export)
    with pytest.raises(DataError) as caught:
        list(read_telegram_export(path))
    assert str(caught.value).startswith(f"{path}: ")
    assert reason in str(caught.value)


def test_non_utf8_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "result.json"
    path.write_bytes('{"id": 1, "messages": [{"id": 1, "type": "message", "text": "caf\xe9"}]}'.encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        list(read_telegram_export(path))
