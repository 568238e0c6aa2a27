"""Sending replies: "typing" while one is made, long text cut into Telegram-sized parts, and each part tried again
when the Bot API fails on its side.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from telegram import Message
from telegram.constants import ChatAction, MessageLimit
from telegram.error import BadRequest, NetworkError, TelegramError

from chatbot.channels.telegram.messages import Context
from chatbot.dialogue.manager import FALLBACK_REPLY

logger = logging.getLogger(__name__)

# "typing" is shown only for replies not ready within this delay: a fast reply needs none, and skipping it saves
# a Bot API call per message. Telegram shows a chat action for about five seconds; it is refreshed before it fades.
TYPING_DELAY_SECONDS = 0.5
TYPING_REFRESH_SECONDS = 4.0
SEND_RETRY_PAUSES = (0.5, 2.0)  # seconds before the second and third attempt at sending after a 5xx or timeout


@contextlib.asynccontextmanager
async def typing_action(context: Context, chat_id: int) -> AsyncIterator[None]:
    """Show "typing" in the chat from TYPING_DELAY_SECONDS after the block starts until it ends (a block that
    ends sooner shows nothing and costs nothing but a timer)."""
    done = asyncio.Event()
    indicator: asyncio.Task[None] | None = None

    def start() -> None:
        nonlocal indicator
        indicator = asyncio.create_task(_keep_typing(context, chat_id, done))

    timer = asyncio.get_running_loop().call_later(TYPING_DELAY_SECONDS, start)
    try:
        yield
    finally:
        timer.cancel()
        done.set()
        # Let an action in flight land first: one arriving after the reply would show "typing" for 5 s more.
        if indicator is not None:
            await indicator


async def _keep_typing(context: Context, chat_id: int, done: asyncio.Event) -> None:
    """Send "typing" at once and every few seconds until ``done``; a failure only ends the indicator."""
    while not done.is_set():
        try:
            await context.bot.send_chat_action(chat_id, ChatAction.TYPING)
        except TelegramError as error:
            logger.debug("typing action failed in chat %s: %s", chat_id, error)
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), TYPING_REFRESH_SECONDS)


async def send_reply(message: Message, text: str, fixed_width: bool = False) -> list[Message]:
    """Answer ``message`` with ``text`` (see ``send_parts``); returns the Telegram messages sent."""
    return await send_parts(message.reply_html if fixed_width else message.reply_text, text, fixed_width)


async def send_parts(send: Callable[[str], Awaitable[Message]], text: str, fixed_width: bool) -> list[Message]:
    """Send ``text`` with ``send``, in as many Telegram messages as its length needs (each in a fixed-width block
    when ``fixed_width``: a <pre> element, with the text HTML-escaped, for ``send`` to mark up as HTML), each
    tried again on a 5xx or timeout; returns them."""
    parts = split_message(text)  # Telegram's length limit counts the text after markup is parsed: split the raw text
    if fixed_width:
        parts = [f"<pre>{html.escape(part, quote=False)}</pre>" for part in parts]
    return [await _retried(functools.partial(send, part)) for part in parts]


async def _retried(send: Callable[[], Awaitable[Message]]) -> Message:
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
