"""The inbox, from the bot's event loop: every update is committed to the database before Telegram is told it
arrived, and the worker (worker.py) answers from there.

python-telegram-bot hands each update it receives to its update queue: the Updater when polling, before its next
getUpdates moves the offset past the update (which tells Telegram it arrived); the webhook server before it answers
Telegram's POST with 200. ``InboxQueue`` is that queue: its ``put`` returns once the update is committed, so an
update is either in the database or not yet confirmed to Telegram, which then sends it again. Polling is plain long
polling: the offset moves on at once. The database calls run in a few threads of the inbox's own
(``ChannelInbox``), each in a transaction of its own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from telegram import Update

from chatbot.errors import StorageError
from chatbot.storage.inbox import InboxStore, InboxTransaction
from chatbot.storage.transactions import run_transaction

logger = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")

INBOX_THREADS = 4  # the inbox's writes are short; its own threads keep them from queueing behind the model
LEASE = timedelta(seconds=30)  # a claimed row is the worker's this long unless renewed (worker.py renews it)
STORE_RETRY_SECONDS = 1.0  # how soon an update the database refused to store is tried again


def worker_name() -> str:
    """A name for this process's worker, unique among the workers sharing a database: host, pid, and a random tag
    (a pid is reused after a restart)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class ChannelInbox:
    """The bot's inbox in the database (storage/inbox.py), for coroutines: ``run`` does a piece of work on the
    InboxStore in a thread, in a transaction of its own (run again when the connection dropped before the commit).
    ``worker`` names this process in the leases it takes."""

    def __init__(self, transaction: InboxTransaction, worker: str, lease: timedelta = LEASE) -> None:
        self.transaction = transaction
        self.worker = worker
        self.lease = lease
        self.threads = ThreadPoolExecutor(INBOX_THREADS, thread_name_prefix="inbox")

    async def run(self, work: Callable[Concatenate[InboxStore, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``work(store, *args, **kwargs)`` on an InboxStore (``InboxStore.claim``, say), in its own transaction."""
        return await self.in_thread(run_transaction, self.transaction, lambda store: work(store, *args, **kwargs))

    async def in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in one of the inbox's threads, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.threads, functools.partial(function, *args))

    def close(self) -> None:
        self.threads.shutdown(wait=True)


class InboxQueue(asyncio.Queue[object]):
    """PTB's update queue, made durable: an update put here is committed to the inbox before ``put`` returns, and
    ``arrived`` is set to wake the worker. Anything else (PTB's own stop signal) is queued as usual. A database
    that refuses the update is tried again every STORE_RETRY_SECONDS: meanwhile polling fetches nothing more, and a
    webhook POST waits (Telegram retries it if it waits too long)."""

    def __init__(self, inbox: ChannelInbox, arrived: asyncio.Event) -> None:
        super().__init__()
        self.inbox = inbox
        self.arrived = arrived

    async def put(self, item: object) -> None:
        if not isinstance(item, Update):
            await super().put(item)
            return
        chat = item.effective_chat
        # Each chat's updates are answered in order; an update of no chat waits for no other.
        key = str(chat.id) if chat is not None else f"update {item.update_id}"
        payload = item.to_dict()
        while True:
            try:
                new = await self.inbox.run(InboxStore.receive, item.update_id, key, payload)
                break
            except StorageError as error:
                logger.error("cannot store update %s (%s); trying again", item.update_id, error)
                await asyncio.sleep(STORE_RETRY_SECONDS)
        if new:
            self.arrived.set()
        else:
            logger.info("update %s was received before; not stored again", item.update_id)
