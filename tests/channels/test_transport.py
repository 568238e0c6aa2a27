"""The polling transport: updates python-telegram-bot cannot read are left out of a getUpdates answer, and the
offset moves past them only once PTB has moved it past every update it did read (and so stored them)."""

from __future__ import annotations

import json
from typing import Any

from chatbot.channels.telegram.transport import PollingRequest


def answer(*updates: dict[str, Any]) -> bytes:
    return json.dumps({"ok": True, "result": list(updates)}).encode()


def text(update_id: int) -> dict[str, Any]:
    chat = {"id": 7, "type": "private"}
    return {"update_id": update_id, "message": {"message_id": update_id, "date": 0, "chat": chat, "text": "hi"}}


def ids(body: bytes) -> list[int]:
    return [update["update_id"] for update in json.loads(body)["result"]]


def test_unreadable_updates_are_left_out_and_skipped_once_the_rest_is_stored() -> None:
    request = PollingRequest(timeout=1.0)
    body = answer(text(1), {"update_id": 2, "message": "not a message"}, text(3), {"update_id": 4, "message": 5})
    assert ids(request.readable(200, body)) == [1, 3]
    assert request.offset(1) == 1  # PTB polls again without having stored 1 and 3: nothing is confirmed
    assert request.offset(4) == 5  # it stored them: the unreadable 4 is confirmed too, or it would come forever
    assert ids(request.readable(200, answer({"update_id": 5, "message": []}))) == []
    assert request.offset(5) == 6  # an answer of nothing readable: PTB's offset stays, the transport moves it


def test_errors_and_bodies_that_are_no_list_of_updates_are_passed_on() -> None:
    request = PollingRequest(timeout=1.0)
    for status, body in [(502, b"Bad Gateway"), (200, b"<html>"), (200, b'{"ok": true, "result": 3}')]:
        assert request.readable(status, body) == body
    assert request.offset(9) == 9
