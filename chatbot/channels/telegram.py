"""The Telegram channel: python-telegram-bot in front of the DialogueManager.

Control flow: ``run_telegram`` builds the Application (``build_application``) and either long-polls the Bot API
for new messages only, or, in webhook mode, serves a webhook that refuses (403) any POST without the secret token.
Updates of different chats run concurrently, one chat's in order (chat_order.py). Each message goes to the first
handler that matches it:
  - ``/start``, ``/help``, ``/reset`` and any other command: passed to the manager as text;
  - plain text: passed to the manager in a worker thread (one per update at most) while the chat shows typing;
    in a group, only text that mentions the bot or replies to it, and each member has their own history;
  - anything else (a sticker, a photo): a short note that only text is understood.
Each message goes to the manager with its Telegram message id, and each reply sent is reported back to it, so a
message Telegram delivers again after a restart is answered once (dialogue/manager.py). When polling, an update is
confirmed to Telegram only once handled (``_Acknowledgements``), so one the bot was killed while answering does
come again; an update python-telegram-bot cannot read is logged and skipped, not left to stall every poll.
A webhook is answered before its update is handled, so Telegram never sends again a message the bot was killed
while answering: at every start, in both modes, before any update is taken (``post_init``, ``_Handlers.on_start``),
the messages stored in the last 24 hours but never answered, or whose reply was never delivered, are answered
first (``answer_left_unanswered``), each as a reply to its message; when polling, the same message fetched again
then finds its reply delivered and is not answered twice.
Edited messages match no handler, so they are never answered. A reply longer than one Telegram message is
cut by ``split_message``. A failing handler ends in ``on_error``, which logs (and, when the fault is ours,
tells the user) and lets the bot go on. The token never reaches a log line: httpx, which logs request URLs
containing it, is quieted, and a filter redacts it from every record.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlsplit

from telegram import BotCommand, Message, MessageEntity, ReplyParameters, Update
from telegram._utils.types import ODVInput
from telegram.constants import ChatAction, ChatType, MessageLimit, ParseMode
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    ExtBot,
    JobQueue,
    MessageHandler,
    filters,
)
from telegram.request import BaseRequest, RequestData

from chatbot.channels.aiohttp_request import TIMEOUT_SECONDS, AiohttpRequest
from chatbot.channels.chat_order import MAX_CONCURRENT_UPDATES, PerChatOrder
from chatbot.channels.rate_limit import SLOW_DOWN_REPLY, RateLimit
from chatbot.dialogue.manager import FALLBACK_REPLY, DialogueManager
from chatbot.dialogue.types import Reply
from chatbot.errors import ChatbotError
from chatbot.storage.records import UnansweredMessage

logger = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "telegram"
# Only new messages: edits, channel posts and member updates are never even fetched.
ALLOWED_UPDATES = (Update.MESSAGE,)
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
REDACTED = "[REDACTED-TOKEN]"
SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what Telegram accepts as a webhook secret token
# "typing" is shown only for replies not ready within this delay: a fast reply needs none, and skipping it saves
# a Bot API call per message. Telegram shows a chat action for about five seconds; it is refreshed before it fades.
TYPING_DELAY_SECONDS = 0.5
TYPING_REFRESH_SECONDS = 4.0
SEND_RETRY_PAUSES = (0.5, 2.0)  # seconds before the second and third attempt at sending after a 5xx or timeout
RATE_LIMIT_RETRIES = 3  # how often the rate limiter retries after a 429, each after the retry_after asked for
# While updates are being handled, getUpdates returns them again at once (they are not confirmed yet), so before
# polling the bot waits for one of them to be handled (HELD_POLL_SECONDS at most) and, if some still are, a short
# gap more: it does not spin, and a message from another chat still waits only milliseconds to be fetched.
HELD_POLL_SECONDS = 0.2
HELD_POLL_GAP_SECONDS = 0.01
# An update still not handled this long after it was fetched is confirmed anyway: getUpdates returns at most 100
# updates from the offset on, so one stuck update would otherwise stop the bot fetching new ones for every chat.
HOLD_SECONDS = 60.0

Context = ContextTypes.DEFAULT_TYPE
TelegramApplication = Application[
    ExtBot[int], Context, dict[Any, Any], dict[Any, Any], dict[Any, Any], JobQueue[Context]
]


@dataclass(frozen=True)
class Webhook:
    """Webhook mode: Telegram POSTs each update to ``url``, which a reverse proxy (or Telegram directly, on ports
    443, 80, 88 or 8443) forwards to ``listen``:``port``. Every POST must carry ``secret`` in the
    X-Telegram-Bot-Api-Secret-Token header, or it is refused with 403; it is registered with setWebhook."""

    url: str
    secret: str
    listen: str = "127.0.0.1"
    port: int = 8443

    def __post_init__(self) -> None:
        parsed = urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ChatbotError(f"webhook URL {self.url!r} must be an absolute http(s) URL")
        if not SECRET.fullmatch(self.secret):
            raise ChatbotError("the webhook secret must be 1-256 characters of A-Z, a-z, 0-9, _ and -")

    def options(self) -> dict[str, Any]:
        """Keyword arguments for PTB's run_webhook and Updater.start_webhook."""
        path = urlsplit(self.url).path.lstrip("/")
        return {
            "listen": self.listen,
            "port": self.port,
            "url_path": path,
            "webhook_url": self.url,
            "secret_token": self.secret,
            "allowed_updates": ALLOWED_UPDATES,
        }


@dataclass(frozen=True)
class Access:
    """Who may talk to the bot: ``allowed`` Telegram user ids (empty: everyone), ``admins`` (always allowed; they
    may use /stats and /model), and at most ``per_minute`` messages per user (0: no limit)."""

    allowed: frozenset[int] = frozenset()
    admins: frozenset[int] = frozenset()
    per_minute: int = 20

    def admits(self, user_id: int) -> bool:
        return not self.allowed or user_id in self.allowed or user_id in self.admins


def new_webhook_secret() -> str:
    """A random secret for a webhook run that was given none (setWebhook registers it at every start)."""
    return secrets.token_urlsafe(32)


def run_telegram(
    token: str, api_url: str, manager: DialogueManager, webhook: Webhook | None = None, access: Access = Access()
) -> None:
    """Serve the bot until Ctrl-C or SIGTERM, by long polling or, given ``webhook``, as a webhook server, to the
    users ``access`` admits; configure logging before calling this."""
    application = build_application(token, api_url, manager, access)
    try:
        if webhook is None:
            logger.info("Telegram bot polling %s", api_url)
            application.run_polling(allowed_updates=ALLOWED_UPDATES, close_loop=False)
        else:
            _protect_token(webhook.secret)  # PTB logs the setWebhook call, secret included, at DEBUG
            logger.info("Telegram webhook on %s:%d for %s", webhook.listen, webhook.port, webhook.url)
            application.run_webhook(**webhook.options(), close_loop=False)
    except InvalidToken:
        # PTB's message quotes the token: replace it, and drop it from the chain a traceback would show.
        raise ChatbotError(f"The Bot API at {api_url} rejected the bot token.") from None
    except NetworkError as error:
        raise ChatbotError(f"Cannot reach the Bot API at {api_url}: {error.message}") from error
    finally:
        _close_loop(application)


def _close_loop(application: TelegramApplication) -> None:
    """Close the loop run_polling ran on, first closing the bot's HTTP connections: PTB leaves them open
    when startup fails (a rejected token), as it only shuts down an Application that finished initializing."""
    loop = asyncio.get_event_loop()
    loop.run_until_complete(application.bot.shutdown())  # a no-op after a normal shutdown
    loop.close()


def build_application(
    token: str,
    api_url: str,
    manager: DialogueManager,
    access: Access = Access(),
    pace: bool = True,
    timeout: float = TIMEOUT_SECONDS,
) -> TelegramApplication:
    """An Application, ready to start, on the Bot API rooted at ``api_url``, answering through ``manager`` the
    users ``access`` admits. ``pace``: keep under Telegram's limits (30 messages a second overall, 20 a minute
    per group); off only for benchmarks against a fake API. A 429's retry_after is honoured either way.
    ``timeout``: seconds to wait to connect to the Bot API, to send a call, and for its answer (beyond the long
    poll's own wait); a call that times out is retried like a 5xx."""
    _protect_token(token)  # before building: the Bot logs its token-bearing URL as it is created
    root = api_url.rstrip("/")
    acknowledgements = _Acknowledgements()
    handlers = _Handlers(manager, access)
    application = (
        ApplicationBuilder()
        .token(token)
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        # PTB's own httpx client caps the bot at ~200 replies/s on 2 cores (aiohttp_request.py).
        .request(AiohttpRequest(read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout))
        .get_updates_request(_PollingRequest(acknowledgements, timeout))
        .rate_limiter(_rate_limiter(pace))
        .concurrent_updates(_AcknowledgedOrder(acknowledgements))  # chats in parallel, each chat's messages in order
        .post_init(handlers.on_start)
        .build()
    )
    _add_handlers(application, handlers)
    return application


class _Acknowledgements:
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


class _PollingRequest(AiohttpRequest):
    """The Bot API connection getUpdates is called on (one at a time), confirming only handled updates
    (_Acknowledgements); ``timeout`` as for build_application."""

    __slots__ = ("acknowledgements",)

    def __init__(self, acknowledgements: _Acknowledgements, timeout: float) -> None:
        super().__init__(1, read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout)
        self.acknowledgements = acknowledgements

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        timeouts = (read_timeout, write_timeout, connect_timeout, pool_timeout)
        if not url.endswith("/getUpdates") or request_data is None:
            return await super().do_request(url, method, request_data, *timeouts)
        form = request_data.json_parameters
        form["offset"] = str(await self.acknowledgements.offset(int(form.get("offset", 0))))
        status, body = await self.send(url, method, form, self._timeout(*timeouts))
        return status, self.acknowledgements.received(status, body)


class _AcknowledgedOrder(PerChatOrder):
    """PerChatOrder, reporting each update it has handled to ``acknowledgements``."""

    def __init__(self, acknowledgements: _Acknowledgements) -> None:
        super().__init__()
        self.acknowledgements = acknowledgements

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        await super().do_process_update(update, coroutine)
        # Not in a finally: an update cut short (cancelled at shutdown) stays unconfirmed, to come again.
        if isinstance(update, Update):
            self.acknowledgements.handled(update.update_id)


def _rate_limiter(pace: bool) -> AIORateLimiter:
    if pace:
        return AIORateLimiter(max_retries=RATE_LIMIT_RETRIES)
    return AIORateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=RATE_LIMIT_RETRIES)


def _add_handlers(application: TelegramApplication, handlers: _Handlers) -> None:
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


class _Handlers:
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
            await _send_reply(message, PRIVATE_REPLY if verdict else SLOW_DOWN_REPLY)
        return False

    async def on_command(self, update: Update, context: Context) -> None:
        """Pass a command to the manager: it answers the ones it knows and calls others unknown."""
        message = update.message
        if message is None or message.text is None:
            return
        if _addressed_to_other_bot(message.text, context.bot.username) or not await self._admitted(message):
            return
        await self._respond(message, message.text)

    async def on_text(self, update: Update, context: Context) -> None:
        """Generate an answer off the event loop, showing "typing" meanwhile. In a group, only messages that
        mention the bot or reply to it are answered, without the mention."""
        message = update.message
        if message is None or message.text is None:
            return
        text = message.text
        if _in_group(message):
            if not _addressed_to_us(message, context.bot.id, context.bot.username):
                return
            text = _without_mention(text, context.bot.username) or text
        if not await self._admitted(message):
            return
        async with _typing_action(context, message.chat_id):
            await self._respond(message, text)

    async def _respond(self, message: Message, text: str) -> None:
        """Ask the manager (in a worker thread) and send its reply, then report what was sent, so that the
        message, if Telegram delivers it again after a restart, is not answered twice."""
        key = conversation_key(message)
        admin = message.from_user is not None and message.from_user.id in self.access.admins
        message_id, name = str(message.message_id), _name(message)
        reply = await self._in_thread(self.manager.respond, CHANNEL, key, text, message_id, name, admin)
        await self._deliver(key, reply, message.reply_html if reply.fixed_width else message.reply_text)

    async def _deliver(self, key: str, reply: Reply, send: Callable[[str], Awaitable[Message]]) -> bool:
        """Send ``reply`` (if it is to be sent) with ``send`` (in parts, retried) and report it delivered; a chat
        that refuses the bot's messages marks the user unreachable instead. Whether it was sent."""
        if not reply.send:
            return False
        try:
            sent = await _send_parts(send, reply.text, reply.fixed_width)
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
            chat_id, sender = _chat_and_sender(key)
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
        if message is None or (_in_group(message) and not _replies_to(message, context.bot.id)):
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


def conversation_key(message: Message) -> str:
    """Whose history a message belongs to: the chat's in a private chat, the sender's within the chat in a group
    (so that members of a group do not talk over each other's context)."""
    if _in_group(message) and message.from_user is not None:
        return f"{message.chat_id}:{message.from_user.id}"
    return str(message.chat_id)


def _chat_and_sender(key: str) -> tuple[int, int]:
    """The chat and the user of a conversation key (``conversation_key``)."""
    chat, _, user = key.partition(":")
    return int(chat), int(user or chat)


def _in_group(message: Message) -> bool:
    return message.chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)


def _name(message: Message) -> str | None:
    """The display name stored with the user: the sender's in a group, the chat's otherwise."""
    if _in_group(message) and message.from_user is not None:
        return message.from_user.full_name
    return message.chat.effective_name


def _addressed_to_us(message: Message, bot_id: int, bot_username: str) -> bool:
    """True when a group message replies to one of the bot's messages or mentions @bot_username."""
    if _replies_to(message, bot_id):
        return True
    mentions = message.parse_entities([MessageEntity.MENTION]).values()
    return any(mention.lower() == f"@{bot_username.lower()}" for mention in mentions)


def _replies_to(message: Message, bot_id: int) -> bool:
    replied = message.reply_to_message
    return replied is not None and replied.from_user is not None and replied.from_user.id == bot_id


def _without_mention(text: str, bot_username: str) -> str:
    """``text`` with every @bot_username taken out and the spaces tidied."""
    return " ".join(re.sub(rf"@{re.escape(bot_username)}\b", " ", text, flags=re.IGNORECASE).split())


def _addressed_to_other_bot(command_text: str, bot_username: str) -> bool:
    """True for ``/cmd@other_bot``: in a group, another bot's command is not ours to answer."""
    head = command_text.split(maxsplit=1)[0] if command_text.strip() else ""
    _, at, target = head.partition("@")
    return bool(at) and target.lower() != bot_username.lower()


@contextlib.asynccontextmanager
async def _typing_action(context: Context, chat_id: int) -> AsyncIterator[None]:
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


async def _send_reply(message: Message, text: str, fixed_width: bool = False) -> list[Message]:
    """Answer ``message`` with ``text`` (see ``_send_parts``); returns the Telegram messages sent."""
    return await _send_parts(message.reply_html if fixed_width else message.reply_text, text, fixed_width)


async def _send_parts(send: Callable[[str], Awaitable[Message]], text: str, fixed_width: bool) -> list[Message]:
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


class _TokenRedactor(logging.Filter):
    """Replaces a bot token in a record's message, arguments and traceback; filters compare equal per token,
    so installing one twice on a handler is a no-op."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TokenRedactor) and other.token == self.token

    def __hash__(self) -> int:
        return hash((_TokenRedactor, self.token))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.token:
            return True
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, REDACTED), None
        # A Formatter renders the traceback into exc_text only if it is unset, so a redacted one here is kept.
        traceback = record.exc_text
        if traceback is None and record.exc_info:
            traceback = logging.Formatter().formatException(record.exc_info)
        if traceback and self.token in traceback:
            record.exc_text = traceback.replace(self.token, REDACTED)
        return True


def _protect_token(token: str) -> None:
    """Keep ``token`` (or the webhook secret) out of the logs: quiet httpx/httpcore (they log request URLs, which
    contain the token) and redact it on every handler of the root logger, and on the httpx logger for handlers
    added later."""
    for name in ("httpx", "httpcore"):
        quiet = logging.getLogger(name)
        quiet.setLevel(max(logging.WARNING, quiet.level))
    redactor = _TokenRedactor(token)
    logging.getLogger("httpx").addFilter(redactor)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
