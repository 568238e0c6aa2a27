"""Transport: the getUpdates connection of a polling bot, which hands python-telegram-bot only the updates it can
read. PTB reads a getUpdates answer as a whole, so one malformed update would fail its whole batch, poll after poll,
and no chat would be served again. Here such an update is logged and left out, and the offset of the next poll is
raised past it, as PTB moves the offset only past the updates it read: only once PTB moved the offset past every
update it did read from that answer, which it does once they are all in the inbox (inbox.py). So the offset never
confirms an update that is not stored, and polling is plain long polling.
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

    __slots__ = ("read_up_to", "skipped_up_to")

    def __init__(self, timeout: float) -> None:
        super().__init__(1, read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout)
        self.read_up_to = -1  # the newest update of the last answer that PTB could read
        self.skipped_up_to = -1  # the newest update of the last answer that was left out

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
        form["offset"] = str(self.offset(int(form.get("offset", 0))))
        status, body = await self.send(url, method, form, self._timeout(*timeouts))
        return status, self.readable(status, body)

    def offset(self, asked: int) -> int:
        """The offset to poll with: past the updates left out, once PTB's own ``asked`` offset is past every
        update it read (it stored them all); else ``asked`` (PTB is polling again for updates it did not store)."""
        if asked > self.read_up_to and self.skipped_up_to >= asked:
            return self.skipped_up_to + 1
        return asked

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
        readable = [update for update in updates if _readable(update)]
        ids = [
            update["update_id"]
            for update in updates
            if isinstance(update, dict) and type(update.get("update_id")) is int
        ]
        self.read_up_to = max((update["update_id"] for update in readable), default=-1)
        self.skipped_up_to = max((update_id for update_id in ids if update_id > self.read_up_to), default=-1)
        answer["result"] = readable
        return json.dumps(answer).encode()


def _readable(update: Any) -> bool:
    """Whether PTB can read ``update``; one that cannot is logged."""
    update_id = update.get("update_id") if isinstance(update, dict) else None
    if type(update_id) is not int:  # not even a bool: nothing to confirm it by
        logger.warning("skipping an update without an update_id")
        return False
    try:
        Update.de_json(update, None)
    except Exception as error:  # PTB's parsing raises whatever the malformed data provokes
        logger.warning("skipping update %s, which is malformed: %s: %s", update_id, type(error).__name__, error)
        return False
    return True
