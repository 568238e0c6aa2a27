"""PerChatOrder on its own: one chat's updates in arrival order, other chats alongside, and no lock kept once a
chat is quiet."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from telegram import Chat, Message, Update

from chatbot.channels.chat_order import PerChatOrder


def update_in(chat_id: int, number: int) -> Update:
    chat = Chat(chat_id, Chat.PRIVATE)
    return Update(number, message=Message(number, datetime.now(timezone.utc), chat, text=str(number)))


async def test_one_chat_in_order_others_alongside_and_no_lock_left_behind() -> None:
    processor = PerChatOrder(max_concurrent_updates=8)
    finished: list[tuple[int, int]] = []
    running: set[int] = set()
    overlapped = False

    async def handle(chat_id: int, number: int, pause: float) -> None:
        nonlocal overlapped
        assert chat_id not in running, "two updates of one chat ran at once"
        running.add(chat_id)
        overlapped = overlapped or len(running) > 1
        await asyncio.sleep(pause)
        running.discard(chat_id)
        finished.append((chat_id, number))

    plan = [(1, 1, 0.03), (2, 2, 0.01), (1, 3, 0.0), (2, 4, 0.02), (1, 5, 0.01)]
    await asyncio.wait_for(
        asyncio.gather(*(processor.process_update(update_in(c, n), handle(c, n, p)) for c, n, p in plan)), timeout=5
    )
    assert [number for chat, number in finished if chat == 1] == [1, 3, 5]
    assert [number for chat, number in finished if chat == 2] == [2, 4]
    assert overlapped and len(processor) == 0
