"""Handlers: the bot's callbacks. Each takes one Telegram message, asks the manager in a worker thread, and replies;
at start, the messages an earlier run left unanswered are answered first. Also who may talk to the bot (``Access``)
and which handler each kind of message goes to (``add_handlers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from telegram import BotCommand, Message, ReplyParameters, Update
from telegram.constants import ParseMode
from telegram.error import Forbidden, NetworkError, TelegramError
from telegram.ext import (
    CommandHandler,
    ExtBot,
    MessageHandler,
    filters,
)

from chatbot.channels.chat_order import MAX_CONCURRENT_UPDATES
from chatbot.channels.rate_limit import SLOW_DOWN_REPLY, RateLimit
from chatbot.channels.telegram.messages import (
    Context,
    TelegramApplication,
    addressed_to_other_bot,
    addressed_to_us,
    chat_and_sender,
    conversation_key,
    display_name,
    in_group,
    replies_to,
    without_mention,
)
from chatbot.channels.telegram.sending import send_parts, send_reply, typing_action
from chatbot.dialogue.manager import DialogueManager
from chatbot.dialogue.types import Reply
from chatbot.errors import ChatbotError
from chatbot.storage.records import UnansweredMessage

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


def add_handlers(application: TelegramApplication, handlers: Handlers) -> None:
    """Route new messages to ``handlers``; edits match nothing (CommandHandler accepts them by default)."""
    new_message = filters.UpdateType.MESSAGE
    for name, _ in COMMANDS:
        application.add_handler(CommandHandler(name, handlers.on_command, filters=new_message))
    application.add_handler(MessageHandler(new_message & filters.COMMAND, handlers.on_command))
    application.add_handler(MessageHandler(new_message & filters.TEXT & ~filters.COMMAND, handlers.on_text))
    # Service messages (members joining, a pinned message) carry no text either, but deserve no answer.
    non_text = new_message & ~filters.TEXT & ~filters.StatusUpdate.ALL
    application.add_handler(MessageHandler(non_text, handlers.on_non_text))
    application.add_error_handler(handlers.on_error)


async def _register_commands(application: TelegramApplication) -> None:
    """Publish the command menu (post_init); a failure only costs the menu, so it is logged, not raised."""
    try:
        await application.bot.set_my_commands([BotCommand(name, about) for name, about in COMMANDS])
    except TelegramError as error:
        logger.warning("could not register the bot commands: %s", error)


class Handlers:
    """The bot's callbacks: each takes one Telegram message, asks the manager, and replies; and, at start, those
    for the messages an earlier run left unanswered (``on_start``)."""

    def __init__(self, manager: DialogueManager, access: Access) -> None:
        self.manager = manager
        self.access = access
        self.rate = RateLimit(access.per_minute) if access.per_minute else None
        # A thread for every update PTB may run at once: the manager's calls block (on the database, or on a
        # micro-batch), and asyncio's default pool of a few threads would cap how many chats are served together.
        self.threads = ThreadPoolExecutor(MAX_CONCURRENT_UPDATES, thread_name_prefix="chat")

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in one of the handler threads, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.threads, functools.partial(function, *args))

    async def _admitted(self, message: Message) -> bool:
        """Whether to serve ``message``: its sender is allowed and within the rate limit. A refusal is explained
        politely, once per burst when it is the rate limit."""
        sender = message.from_user.id if message.from_user is not None else message.chat_id
        verdict = self.rate.check(str(sender)) if self.rate is not None else True
        if verdict and self.access.admits(sender):
            return True
        if verdict is not None:  # None: already told to slow down in this burst
            await send_reply(message, PRIVATE_REPLY if verdict else SLOW_DOWN_REPLY)
        return False

    async def on_command(self, update: Update, context: Context) -> None:
        """Pass a command to the manager: it answers the ones it knows and calls others unknown."""
        message = update.message
        if message is None or message.text is None:
            return
        if addressed_to_other_bot(message.text, context.bot.username) or not await self._admitted(message):
            return
        await self._respond(message, message.text)

    async def on_text(self, update: Update, context: Context) -> None:
        """Generate an answer off the event loop, showing "typing" meanwhile. In a group, only messages that
        mention the bot or reply to it are answered, without the mention."""
        message = update.message
        if message is None or message.text is None:
            return
        text = message.text
        if in_group(message):
            if not addressed_to_us(message, context.bot.id, context.bot.username):
                return
            text = without_mention(text, context.bot.username) or text
        if not await self._admitted(message):
            return
        async with typing_action(context, message.chat_id):
            await self._respond(message, text)

    async def _respond(self, message: Message, text: str) -> None:
        """Ask the manager (in a worker thread) and send its reply, then report what was sent, so that the
        message, if Telegram delivers it again after a restart, is not answered twice."""
        key = conversation_key(message)
        admin = message.from_user is not None and message.from_user.id in self.access.admins
        message_id, name = str(message.message_id), display_name(message)
        reply = await self._in_thread(self.manager.respond, CHANNEL, key, text, message_id, name, admin)
        await self._deliver(key, reply, message.reply_html if reply.fixed_width else message.reply_text)

    async def _deliver(self, key: str, reply: Reply, send: Callable[[str], Awaitable[Message]]) -> bool:
        """Send ``reply`` (if it is to be sent) with ``send`` (in parts, retried) and report it delivered; a chat
        that refuses the bot's messages marks the user unreachable instead. Whether it was sent."""
        if not reply.send:
            return False
        try:
            sent = await send_parts(send, reply.text, reply.fixed_width)
        except Forbidden as error:  # the user blocked the bot (or left the group): not our fault, not fatal
            logger.warning("chat %s refuses the bot's messages (%s); the user is marked inactive", key, error)
            await self._in_thread(self.manager.unreachable, CHANNEL, key)
            return False
        await self._in_thread(self.manager.delivered, reply, str(sent[-1].message_id))
        return True

    async def on_start(self, application: TelegramApplication) -> None:
        """post_init: publish the command menu, then answer what an earlier run left unanswered, before the
        first update is taken (so that none races with the same message delivered again). The bot starts anyway
        if that fails: new messages may still be served."""
        await _register_commands(application)
        try:
            await self.answer_left_unanswered(application.bot)
        except ChatbotError as error:  # the database is down, say
            logger.error("could not answer the messages left unanswered: %s", error)
        except Exception:
            logger.exception("could not answer the messages left unanswered")

    async def answer_left_unanswered(self, bot: ExtBot[int]) -> int:
        """Answer the messages an earlier run stored but never answered, or whose reply it never delivered
        (``DialogueManager.unanswered``), each as a reply to its message: chats in parallel, each chat's in order.
        Returns how many were answered; a chat that fails is logged and costs no other chat its answers."""
        async with self._holding(self.manager.unanswered_lock(CHANNEL)):
            pending = await self._in_thread(self.manager.unanswered, CHANNEL)
            by_chat: dict[str, list[UnansweredMessage]] = {}
            for message in pending:
                by_chat.setdefault(message.external_id, []).append(message)
            answered = sum(await asyncio.gather(*(self._answer_late(bot, key, late) for key, late in by_chat.items())))
        logger.info("answered %d of %d messages left unanswered by an earlier run", answered, len(pending))
        return answered

    @contextlib.asynccontextmanager
    async def _holding(self, lock: contextlib.AbstractContextManager[object]) -> AsyncIterator[None]:
        """Hold ``lock``, a blocking one, for the block, taking and releasing it in a handler thread."""
        held = contextlib.ExitStack()
        await self._in_thread(held.enter_context, lock)
        try:
            yield
        finally:
            await self._in_thread(held.close)

    async def _answer_late(self, bot: ExtBot[int], key: str, messages: list[UnansweredMessage]) -> int:
        """Answer one conversation's ``messages`` in order, each as a reply to its message; returns how many were
        sent. A failure ends this conversation's: the messages after one not answered wait for the next start."""
        answered = 0
        try:
            chat_id, sender = chat_and_sender(key)
            if not self.access.admits(sender):  # --allow changed since they wrote
                return 0
            for message in messages:
                respond = functools.partial(self.manager.respond, CHANNEL, key, message.text)
                reply = await self._in_thread(respond, message.channel_message_id)
                quoted = ReplyParameters(int(message.channel_message_id), allow_sending_without_reply=True)
                parse_mode = ParseMode.HTML if reply.fixed_width else None
                send = functools.partial(bot.send_message, chat_id, parse_mode=parse_mode, reply_parameters=quoted)
                if not await self._deliver(key, reply, send):
                    break
                answered += 1
        except Exception as error:  # a network error, the database, the model: other chats go on
            failed = messages[answered].channel_message_id
            logger.warning("could not answer message %s of chat %s: %s: %s", failed, key, type(error).__name__, error)
        return answered

    async def on_non_text(self, update: Update, context: Context) -> None:
        """Explain that only text is understood (in a group, only to a reply to the bot)."""
        message = update.message
        if message is None or (in_group(message) and not replies_to(message, context.bot.id)):
            return
        if await self._admitted(message):
            await message.reply_text(NON_TEXT_REPLY)

    async def on_error(self, update: object, context: Context) -> None:
        """Log a failed update (without the token) and, if the fault is ours, tell the user; never raise."""
        error = context.error
        update_id = update.update_id if isinstance(update, Update) else None
        if isinstance(error, Forbidden):
            logger.warning("update %s: the bot may not write to this chat: %s", update_id, error)
        elif isinstance(error, NetworkError):
            logger.warning("update %s: network error talking to Telegram: %s", update_id, error)
        else:
            logger.error("update %s failed", update_id, exc_info=error)
        message = update.message if isinstance(update, Update) else None
        # A malformed message may have no chat to answer in.
        if message is not None and message.chat is not None and not isinstance(error, TelegramError):
            with contextlib.suppress(TelegramError):
                await message.reply_text(ERROR_REPLY)
