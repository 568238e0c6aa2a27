"""Handlers: what the bot answers to one Telegram update, taken from the inbox (worker.py): a command or a text is
passed to the manager in a handler thread, other messages get an explanation, and senders not admitted a polite
refusal. The answer is returned, not sent: the outbox (outbox.py) sends it. Also who may talk to the bot
(``Access``) and the command menu.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from telegram import BotCommand, Message, Update
from telegram.error import TelegramError
from telegram.ext import ExtBot, filters

from chatbot.channels.rate_limit import SLOW_DOWN_REPLY, RateLimit
from chatbot.channels.telegram.messages import (
    TelegramApplication,
    addressed_to_other_bot,
    addressed_to_us,
    conversation_key,
    display_name,
    in_group,
    replies_to,
    without_mention,
)
from chatbot.channels.telegram.sending import typing_action
from chatbot.dialogue.manager import DialogueManager
from chatbot.errors import StorageError
from chatbot.storage.inbox import Outgoing

logger = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "telegram"
COMMANDS = (
    ("start", "Start a new conversation"),
    ("help", "List the commands"),
    ("reset", "Forget this conversation and start over"),
    ("history", "Show what the bot remembers of this conversation"),
    ("mode", "Decode replies by greedy, beam or sample"),
    ("beam", "Set the beam width, 1-16"),
    ("temperature", "Set the sampling temperature"),
    ("topp", "Set the sampling top-p"),
    ("settings", "Show your decoding settings"),
    ("why", "Show how the last reply was made"),
    ("export", "Show this conversation as text"),
    ("forget", "Delete everything stored about you"),
)
NON_TEXT_REPLY = "I only understand text messages. Please write to me in words."
ERROR_REPLY = "Sorry, something went wrong on my side. Please try again."
PRIVATE_REPLY = "Sorry, this is a private bot: it only talks to the people its owner allowed."


@dataclass(frozen=True)
class Access:
    """Who may talk to the bot: ``allowed`` Telegram user ids (empty: everyone), ``admins`` (always allowed; they
    may use /stats and /model), and at most ``per_minute`` messages per user (0: no limit)."""

    allowed: frozenset[int] = frozenset()
    admins: frozenset[int] = frozenset()
    per_minute: int = 20

    def admits(self, user_id: int) -> bool:
        return not self.allowed or user_id in self.allowed or user_id in self.admins


async def register_commands(application: TelegramApplication) -> None:
    """Publish the command menu (post_init); a failure only costs the menu, so it is logged, not raised."""
    try:
        await application.bot.set_my_commands([BotCommand(name, about) for name, about in COMMANDS])
    except TelegramError as error:
        logger.warning("could not register the bot commands: %s", error)


class Handlers:
    """What the bot answers: ``answer`` takes one update and returns the reply to send (None: nothing to send),
    asking the manager in one of ``threads`` where it must."""

    def __init__(self, manager: DialogueManager, access: Access, threads: ThreadPoolExecutor) -> None:
        self.manager = manager
        self.access = access
        self.rate = RateLimit(access.per_minute) if access.per_minute else None
        # The manager's calls block (on the database, or on a micro-batch): they run in threads, one per update the
        # worker handles at once, as asyncio's default pool of a few threads would cap how many chats are served.
        self.threads = threads

    async def in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in one of the handler threads, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.threads, functools.partial(function, *args))

    async def answer(self, update: Update, bot: ExtBot[int]) -> Outgoing | None:
        """The reply to ``update``: a command's or a text's from the manager, an explanation for other messages,
        nothing for the rest (edits, service messages, group messages not for the bot). A failure of ours is
        logged and the user told; the database's trouble is raised, for the update to be tried again later."""
        message = update.message
        if message is None:
            return None
        try:
            if filters.COMMAND.check_update(update):
                return await self._command(message, bot)
            if filters.TEXT.check_update(update):
                return await self._text(message, bot)
            if not filters.StatusUpdate.ALL.check_update(update):  # members joining, a pin: no answer deserved
                return await self._non_text(message, bot)
            return None
        except StorageError:
            raise
        except Exception as error:
            logger.error("update %s failed", update.update_id, exc_info=error)
            return Outgoing(ERROR_REPLY)

    async def _command(self, message: Message, bot: ExtBot[int]) -> Outgoing | None:
        """A command goes to the manager: it answers the ones it knows and calls others unknown. One for another
        bot (``/help@other_bot``) is not ours."""
        text = message.text or ""
        if addressed_to_other_bot(text, bot.username):
            return None
        admitted, refusal = self._admit(message)
        return await self._respond(message, text) if admitted else refusal

    async def _text(self, message: Message, bot: ExtBot[int]) -> Outgoing | None:
        """Generate an answer off the event loop, showing "typing" meanwhile. In a group, only messages that
        mention the bot or reply to it are answered, without the mention."""
        text = message.text or ""
        if in_group(message):
            if not addressed_to_us(message, bot.id, bot.username):
                return None
            text = without_mention(text, bot.username) or text
        admitted, refusal = self._admit(message)
        if not admitted:
            return refusal
        async with typing_action(bot, message.chat_id):
            return await self._respond(message, text)

    async def _non_text(self, message: Message, bot: ExtBot[int]) -> Outgoing | None:
        """Explain that only text is understood (in a group, only to a reply to the bot)."""
        if in_group(message) and not replies_to(message, bot.id):
            return None
        admitted, refusal = self._admit(message)
        return Outgoing(NON_TEXT_REPLY) if admitted else refusal

    def _admit(self, message: Message) -> tuple[bool, Outgoing | None]:
        """Whether to serve ``message`` (its sender is allowed and within the rate limit) and, if not, the polite
        refusal to send: once per burst for the rate limit, None after that."""
        sender = message.from_user.id if message.from_user is not None else message.chat_id
        verdict = self.rate.check(str(sender)) if self.rate is not None else True
        if verdict and self.access.admits(sender):
            return True, None
        if verdict is None:  # already told to slow down in this burst
            return False, None
        return False, Outgoing(PRIVATE_REPLY if verdict else SLOW_DOWN_REPLY)

    async def _respond(self, message: Message, text: str) -> Outgoing | None:
        """Ask the manager (in a handler thread) for the reply: stored, with the user's turn, before it is sent."""
        key = conversation_key(message)
        admin = message.from_user is not None and message.from_user.id in self.access.admins
        message_id, name = str(message.message_id), display_name(message)
        reply = await self.in_thread(self.manager.respond, CHANNEL, key, text, message_id, name, admin)
        return Outgoing(reply.text, reply.fixed_width, reply.turn_id) if reply.send else None
