"""Sending replies: "typing" while one is made, long text cut into Telegram-sized parts, and each part tried again
at once when the Bot API fails on its side (a reply still not sent waits in the outbox, outbox.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from telegram import Message
from telegram.constants import ChatAction, MessageLimit
from telegram.error import BadRequest, NetworkError, TelegramError
from telegram.ext import ExtBot

from chatbot.dialogue.manager import FALLBACK_REPLY

logger = logging.getLogger(__name__)

# "typing" is shown only for replies not ready within this delay: a fast reply needs none, and skipping it saves
# a Bot API call per message. Telegram shows a chat action for about five seconds; it is refreshed before it fades.
TYPING_DELAY_SECONDS = 0.5
TYPING_REFRESH_SECONDS = 4.0
SEND_RETRY_PAUSES = (0.5, 2.0)  # seconds before the second and third attempt at sending after a 5xx or timeout


@contextlib.asynccontextmanager
async def typing_action(bot: ExtBot[int], chat_id: int) -> AsyncIterator[None]:
    """Show "typing" in the chat from TYPING_DELAY_SECONDS after the block starts until it ends (a block that
    ends sooner shows nothing and costs nothing but a timer)."""
    done = asyncio.Event()
    indicator: asyncio.Task[None] | None = None

    def start() -> None:
        nonlocal indicator
        indicator = asyncio.create_task(_keep_typing(bot, chat_id, done))

    timer = asyncio.get_running_loop().call_later(TYPING_DELAY_SECONDS, start)
    try:
        yield
    finally:
        timer.cancel()
        done.set()
        # Let an action in flight land first: one arriving after the reply would show "typing" for 5 s more.
        if indicator is not None:
            await indicator


async def _keep_typing(bot: ExtBot[int], chat_id: int, done: asyncio.Event) -> None:
    """Send "typing" at once and every few seconds until ``done``; a failure only ends the indicator."""
    while not done.is_set():
        try:
            await bot.send_chat_action(chat_id, ChatAction.TYPING)
        except TelegramError as error:
            logger.debug("typing action failed in chat %s: %s", chat_id, error)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), TYPING_REFRESH_SECONDS)


def message_parts(text: str, fixed_width: bool) -> list[str]:
    """``text`` as the Telegram messages that carry it: as many as its length needs (``split_message``), each in
    a fixed-width block when ``fixed_width`` (a <pre> element, the text HTML-escaped, to be sent as HTML)."""
    parts = split_message(text)  # Telegram's length limit counts the text after markup is parsed: split the raw text
    if fixed_width:
        parts = [f"<pre>{html.escape(part, quote=False)}</pre>" for part in parts]
    return parts


async def send_retried(send: Callable[[], Awaitable[Message]]) -> Message:
    """``send()``, tried again after a pause when the Bot API fails on its side (5xx) or times out; a refusal
    (400, 403) is final, and 429 is handled by the rate limiter, which waits the retry_after Telegram asks for."""
    for pause in SEND_RETRY_PAUSES:
        try:
            return await send()
        except BadRequest:
            raise
        except NetworkError as error:  # TimedOut and server errors; BadRequest is a NetworkError too
            logger.warning("sending failed (%s); trying again in %g s", error, pause)
            await asyncio.sleep(pause)
    return await send()  # the last attempt: its error is the caller's


def split_message(text: str, limit: int = MessageLimit.MAX_TEXT_LENGTH) -> list[str]:
    """Cut ``text`` into non-blank parts of at most ``limit`` UTF-16 units, at a newline or space if near.

    Whitespace at the cuts and around the text is dropped (Telegram trims it anyway); blank text gives one
    placeholder part, because Telegram refuses an empty message.
    """
    if limit < 2:
        raise ValueError(f"limit must be at least 2 UTF-16 units (one astral character), got {limit}")
    parts: list[str] = []
    rest = text.strip()
    while rest:
        end = _fitting_prefix(rest, limit)
        cut = end if end == len(rest) else _break_point(rest, end)
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return parts or [FALLBACK_REPLY]


def _fitting_prefix(text: str, limit: int) -> int:
    """The length of the longest prefix of ``text`` that is at most ``limit`` UTF-16 units long."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1  # an astral character is a surrogate pair in UTF-16
        if units > limit:
            return index
    return len(text)


def _break_point(text: str, end: int) -> int:
    """Where to cut ``text`` at or before ``end``: the last newline, else the last whitespace, in the second
    half of the prefix; else ``end`` itself. ``text[0]`` is not whitespace, so the cut is at least 1."""
    newline = text.rfind("\n", end // 2 + 1, end + 1)
    if newline > 0:
        return newline
    space = next((index for index in range(end, end // 2, -1) if text[index].isspace()), None)
    return space if space is not None else end
