"""The worker: it claims rows from the inbox and sees each through, answered (handlers.py) and then delivered
(outbox.py), many chats at once and each chat's rows one after another.

A loop claims as many rows as there are free places (MAX_CONCURRENT_UPDATES in all), at most the oldest
unfinished row of each chat, and starts a task for each. It claims again when an update arrives, when a task ends
(the chat's next row may be waiting) and every POLL_SECONDS (replies due to be tried again, rows another worker
received or left behind). A second loop renews the leases of the rows in hand, so that a row being answered for a
long time stays this worker's, while a row of a worker that died is free again once its lease runs out.

At start, rows an earlier run did not finish are claimed first, as they are the oldest: this is how a restart
finishes them. On SQLite, which one process serves, their leases are freed at once; on Postgres they wait for their
leases to run out, as another worker may still be at them. At stop, the worker takes no new row, gives the rows in
hand STOP_SECONDS to finish, and gives back the leases of the rest for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from telegram import Update
from telegram.ext import ExtBot

from chatbot.channels.telegram.handlers import Handlers
from chatbot.channels.telegram.inbox import ChannelInbox
from chatbot.channels.telegram.outbox import Outbox
from chatbot.errors import StorageError
from chatbot.storage.contract import Clock, utc_now
from chatbot.storage.inbox import RECEIVED, InboxRow, InboxStore

logger = logging.getLogger(__name__)

MAX_CONCURRENT_UPDATES = 64  # rows a worker handles at once, each chat's one at a time
POLL_SECONDS = 1.0  # the longest a worker waits before looking for rows it was not told of
STOP_SECONDS = 5.0  # at stop, how long the rows in hand may take to finish before they are given back
KEEP_FINISHED = timedelta(days=1)  # finished rows kept to recognise an update sent again; then pruned
PRUNE_SECONDS = 3600.0
MAX_CLAIMS = 5  # a row taken over this often (its handling failed or its worker died each time) is given up


async def take_over(inbox: ChannelInbox, single_process: bool) -> None:
    """Before this run receives anything: free the leases a dead process left (SQLite, which one process serves)
    and say how many updates an earlier run left unfinished, which the worker then finishes first."""
    if single_process:
        await inbox.run(InboxStore.release_all)
    left = await inbox.run(InboxStore.unfinished)
    if left:
        logger.info("%d updates left unfinished by an earlier run are finished first", left)


class Worker:
    """Claims rows from ``inbox`` and sees each through ``handlers`` and ``outbox``, with ``bot``; ``wake`` is set
    when there may be rows to claim (the inbox queue sets it for each update stored)."""

    def __init__(
        self,
        inbox: ChannelInbox,
        handlers: Handlers,
        outbox: Outbox,
        bot: ExtBot[int],
        wake: asyncio.Event,
        concurrency: int = MAX_CONCURRENT_UPDATES,
        clock: Clock = utc_now,
    ) -> None:
        self.inbox = inbox
        self.handlers = handlers
        self.outbox = outbox
        self.bot = bot
        self.concurrency = concurrency
        self.clock = clock
        self.in_hand: dict[int, asyncio.Task[None]] = {}  # row id: the task seeing it through
        self._wake = wake
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start claiming (``take_over`` first, before any update of this run arrives)."""
        self._loops = [asyncio.create_task(self._claim_loop()), asyncio.create_task(self._lease_loop())]

    async def stop(self) -> None:
        """Take no new row, let the rows in hand finish for STOP_SECONDS, and give back the leases of the rest."""
        self._stopping = True
        self._wake.set()
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self.in_hand:
            await asyncio.wait(list(self.in_hand.values()), timeout=STOP_SECONDS)
        unfinished = list(self.in_hand.values())
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        try:
            released = await self.inbox.run(InboxStore.release, self.inbox.worker)
        except StorageError as error:
            logger.error("could not give back the rows in hand (%s); they are free once their leases run out", error)
            return
        if released:
            logger.info("%d updates not finished by the stop are finished at the next start", released)

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before claiming: a wake-up during the claim is not lost
            free = self.concurrency - len(self.in_hand)
            if free > 0:
                try:
                    rows = await self.inbox.run(InboxStore.claim, self.inbox.worker, free, self.inbox.lease)
                except StorageError as error:
                    logger.error("cannot claim updates from the inbox: %s", error)
                    rows = []
                for row in rows:
                    if row.id not in self.in_hand:  # else its lease ran out while in hand, and it is ours again
                        self.in_hand[row.id] = asyncio.create_task(self._see_through(row))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)

    async def _lease_loop(self) -> None:
        """Renew the leases of the rows in hand three times per lease; prune finished rows every PRUNE_SECONDS."""
        interval = self.inbox.lease.total_seconds() / 3
        since_prune = PRUNE_SECONDS
        while True:
            try:
                await self.inbox.run(InboxStore.renew, self.inbox.worker, list(self.in_hand), self.inbox.lease)
                if since_prune >= PRUNE_SECONDS:
                    await self.inbox.run(InboxStore.prune, self.clock() - KEEP_FINISHED)
                    since_prune = 0.0
            except StorageError as error:
                logger.error("cannot renew the leases of the updates in hand: %s", error)
            await asyncio.sleep(interval)
            since_prune += interval

    async def _see_through(self, row: InboxRow) -> None:
        """Answer a received row, then deliver its reply; a failure leaves the row to be claimed again."""
        try:
            if row.claims - row.attempts > MAX_CLAIMS:  # claims beyond the outbox's own tries
                logger.error("update %s failed %d times; given up", row.update_id, row.claims - row.attempts - 1)
                await self.inbox.run(InboxStore.fail, row.id, self.inbox.worker)
                return
            update = Update.de_json(row.payload, self.bot)
            reply = row.reply
            if row.state == RECEIVED:
                reply = await self.handlers.answer(update, self.bot)
                if not await self.inbox.run(InboxStore.answer, row.id, self.inbox.worker, reply):
                    logger.warning("update %s was taken over by another worker", row.update_id)
                    return
            if reply is not None and update.message is not None:
                await self.outbox.deliver(row, update.message, reply)
        except StorageError as error:
            logger.error("update %s: %s; it is tried again when its lease runs out", row.update_id, error)
        except Exception:
            logger.exception("update %s failed; it is tried again when its lease runs out", row.update_id)
        finally:
            del self.in_hand[row.id]
            self._wake.set()
