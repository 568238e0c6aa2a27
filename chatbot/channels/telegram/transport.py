"""Transport: the getUpdates connection of a polling bot, which hands python-telegram-bot only the updates it can
read. PTB reads a getUpdates answer as a whole, so one malformed update would fail its whole batch, poll after poll,
and no chat would be served again. Here such an update is logged and left out, and the offset of the next poll is
raised past it, as PTB moves the offset only past the updates it read. Every update the bot reads is committed to
the inbox before the next poll confirms it (inbox.py), so polling is plain long polling.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from telegram import Update
from telegram.request import BaseRequest, RequestData

from chatbot.channels.aiohttp_request import AiohttpRequest, Timeout

logger = logging.getLogger(__name__)


class PollingRequest(AiohttpRequest):
    """The Bot API connection getUpdates is called on (one at a time), leaving out the updates PTB cannot read;
    ``timeout``: seconds to connect, send and wait for an answer beyond the long poll's own wait."""

    __slots__ = ("next_id",)

    def __init__(self, timeout: float) -> None:
        super().__init__(1, read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout)
        self.next_id = 0  # one above the newest update seen

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
        form["offset"] = str(max(int(form.get("offset", 0)), self.next_id))
        status, body = await self.send(url, method, form, self._timeout(*timeouts))
        return status, self.readable(status, body)

    def readable(self, status: int, body: bytes) -> bytes:
        """The getUpdates answer ``body`` without the updates PTB cannot read. An error, or a body that is no list
        of updates, is passed on for PTB to report."""
        if status != HTTPStatus.OK:
            return body
        try:
            answer = json.loads(body)
        except ValueError:
            return body
        updates = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(updates, list):
            return body
        answer["result"] = [update for update in updates if self._readable(update)]
        return json.dumps(answer).encode()

    def _readable(self, update: Any) -> bool:
        """Whether PTB can read ``update``; either way, the next poll's offset is past it."""
        update_id = update.get("update_id") if isinstance(update, dict) else None
        if type(update_id) is not int:  # not even a bool: nothing to confirm it by
            logger.warning("skipping an update without an update_id")
            return False
        self.next_id = max(self.next_id, update_id + 1)
        try:
            Update.de_json(update, None)
        except Exception as error:  # PTB's parsing raises whatever the malformed data provokes
            logger.warning("skipping update %s, which is malformed: %s: %s", update_id, type(error).__name__, error)
            return False
        return True
