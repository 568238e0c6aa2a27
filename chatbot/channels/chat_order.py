"""PerChatOrder: python-telegram-bot runs updates of different chats at the same time, one chat's in order.

PTB can process updates concurrently, but then nothing keeps two messages of one chat in the order they were
sent. This update processor gives each chat an ``asyncio.Lock``: updates are dispatched in arrival order, and an
asyncio lock hands itself to its waiters first come, first served, so one chat's updates run one after another
in that order while other chats' run alongside. A chat's lock is dropped once no update of it is running or
waiting, so the table holds only active chats.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor

MAX_CONCURRENT_UPDATES = 64


class PerChatOrder(BaseUpdateProcessor):
    """At most ``max_concurrent_updates`` updates at once, never two of one chat."""

    def __init__(self, max_concurrent_updates: int = MAX_CONCURRENT_UPDATES) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, asyncio.Lock] = {}
        self._holders: dict[int, int] = {}  # updates of each chat running or waiting for its lock

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            await coroutine
            return
        lock = self._locks.setdefault(chat.id, asyncio.Lock())
        self._holders[chat.id] = self._holders.get(chat.id, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            self._holders[chat.id] -= 1
            if not self._holders[chat.id]:
                del self._holders[chat.id], self._locks[chat.id]

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to tear down."""

    def __len__(self) -> int:
        return len(self._locks)
