"""Transport: how polled updates are confirmed to Telegram. getUpdates confirms every update below its offset; here
the offset is held at the oldest update still being handled, so that one the bot was killed while answering comes
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable
from http import HTTPStatus
from typing import Any

from telegram import Update
from telegram.request import BaseRequest, RequestData

from chatbot.channels.aiohttp_request import AiohttpRequest, Timeout
from chatbot.channels.chat_order import PerChatOrder

logger = logging.getLogger(__name__)

# While updates are being handled, getUpdates returns them again at once (they are not confirmed yet), so before
# polling the bot waits for one of them to be handled (HELD_POLL_SECONDS at most) and, if some still are, a short
# gap more: it does not spin, and a message from another chat still waits only milliseconds to be fetched.
HELD_POLL_SECONDS = 0.2
HELD_POLL_GAP_SECONDS = 0.01
# An update still not handled this long after it was fetched is confirmed anyway: getUpdates returns at most 100
# updates from the offset on, so one stuck update would otherwise stop the bot fetching new ones for every chat.
HOLD_SECONDS = 60.0


class Acknowledgements:
    """Which fetched updates are still being handled, so that getUpdates confirms an update only once it is.

    getUpdates confirms every update below its ``offset``, and PTB's Updater moves the offset past the updates it
    fetched at its very next poll: a bot killed while answering would never be sent that message again. Each poll
    passes through ``offset``, which holds the offset at the oldest update still being handled, and its answer
    through ``received``, which leaves out the updates fetched before and any PTB cannot read (one such update
    fails its whole batch, poll after poll); the update processor reports each update ``handled``.
    """

    def __init__(self) -> None:
        self.unhandled: dict[int, float] = {}  # update id: when it was fetched (time.monotonic)
        self.next_id = 0  # one above the newest update fetched
        self._progress = asyncio.Event()  # set when an update is handled

    async def offset(self, asked: int) -> int:
        """The offset for the next getUpdates, ``asked`` by the Updater, held back at the oldest update still being
        handled; a held poll waits first, as it returns at once (the held updates again)."""
        if self._held() is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._progress.wait(), HELD_POLL_SECONDS)
            if self._held() is not None:  # still: the poll will return at once, so it waits a little more
                await asyncio.sleep(HELD_POLL_GAP_SECONDS)
        self._progress.clear()
        held = self._held()
        return max(asked, self.next_id) if held is None else held

    def received(self, status: int, body: bytes) -> bytes:
        """The getUpdates answer ``body`` without the updates fetched before or unreadable; the rest are now
        being handled. An error, or a body that is no list of updates, is passed on for PTB to report."""
        if status != HTTPStatus.OK:
            return body
        try:
            answer = json.loads(body)
        except ValueError:
            return body
        updates = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(updates, list):
            return body
        answer["result"] = [update for update in updates if self._fresh(update)]
        return json.dumps(answer).encode()

    def handled(self, update_id: int) -> None:
        """Note that the update is handled: the next poll may confirm it."""
        self.unhandled.pop(update_id, None)
        self._progress.set()

    def _fresh(self, update: Any) -> bool:
        """Whether ``update`` is new and readable; either way, from now on it counts as fetched."""
        update_id = update.get("update_id") if isinstance(update, dict) else None
        if type(update_id) is not int:  # not even a bool: nothing to confirm it by
            logger.warning("skipping an update without an update_id")
            return False
        if update_id < self.next_id:
            return False
        self.next_id = update_id + 1
        try:
            Update.de_json(update, None)
        except Exception as error:  # PTB's parsing raises whatever the malformed data provokes
            logger.warning("skipping update %s, which is malformed: %s: %s", update_id, type(error).__name__, error)
            return False
        self.unhandled[update_id] = time.monotonic()
        return True

    def _held(self) -> int | None:
        """The oldest update being handled, of those fetched less than HOLD_SECONDS ago (the others are given up)."""
        since = time.monotonic() - HOLD_SECONDS
        self.unhandled = {update_id: fetched for update_id, fetched in self.unhandled.items() if fetched > since}
        return min(self.unhandled, default=None)


class PollingRequest(AiohttpRequest):
    """The Bot API connection getUpdates is called on (one at a time), confirming only handled updates
    (Acknowledgements); ``timeout`` as for build_application."""

    __slots__ = ("acknowledgements",)

    def __init__(self, acknowledgements: Acknowledgements, timeout: float) -> None:
        super().__init__(1, read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout)
        self.acknowledgements = acknowledgements

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Timeout = BaseRequest.DEFAULT_NONE,
        write_timeout: Timeout = BaseRequest.DEFAULT_NONE,
        connect_timeout: Timeout = BaseRequest.DEFAULT_NONE,
        pool_timeout: Timeout = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        timeouts = (read_timeout, write_timeout, connect_timeout, pool_timeout)
        if not url.endswith("/getUpdates") or request_data is None:
            return await super().do_request(url, method, request_data, *timeouts)
        form = request_data.json_parameters
        form["offset"] = str(await self.acknowledgements.offset(int(form.get("offset", 0))))
        status, body = await self.send(url, method, form, self._timeout(*timeouts))
        return status, self.acknowledgements.received(status, body)


class AcknowledgedOrder(PerChatOrder):
    """PerChatOrder, reporting each update it has handled to ``acknowledgements``."""

    def __init__(self, acknowledgements: Acknowledgements) -> None:
        super().__init__()
        self.acknowledgements = acknowledgements

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        await super().do_process_update(update, coroutine)
        # Not in a finally: an update cut short (cancelled at shutdown) stays unconfirmed, to come again.
        if isinstance(update, Update):
            self.acknowledgements.handled(update.update_id)
