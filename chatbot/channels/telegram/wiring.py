"""Wiring: the Application built from the token, the Bot API root, the manager, the database and who may talk,
served by long polling or as a webhook until Ctrl-C. python-telegram-bot receives the updates (polling or webhook)
and puts each into the inbox (inbox.py); the worker (worker.py) answers from there, through the handlers and the
outbox; PTB's own dispatching of updates to handlers is not used.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session, sessionmaker
from telegram import Update
from telegram.error import InvalidToken, NetworkError
from telegram.ext import (
    AIORateLimiter,
    ApplicationBuilder,
)

from chatbot.channels.aiohttp_request import TIMEOUT_SECONDS, AiohttpRequest
from chatbot.channels.telegram.handlers import CHANNEL, Access, Handlers, register_commands
from chatbot.channels.telegram.inbox import ChannelInbox, InboxQueue, worker_name
from chatbot.channels.telegram.messages import TelegramApplication
from chatbot.channels.telegram.outbox import Outbox
from chatbot.channels.telegram.redaction import protect_token
from chatbot.channels.telegram.transport import PollingRequest
from chatbot.channels.telegram.worker import MAX_CONCURRENT_UPDATES, Worker, take_over
from chatbot.dialogue.manager import DialogueManager
from chatbot.errors import ChatbotError
from chatbot.storage.inbox import inbox_transaction
from chatbot.storage.transactions import engine_of

logger = logging.getLogger(__name__)

# Only new messages: edits, channel posts and member updates are never even fetched.
ALLOWED_UPDATES = (Update.MESSAGE,)
SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what Telegram accepts as a webhook secret token
RATE_LIMIT_RETRIES = 3  # how often the rate limiter retries after a 429, each after the retry_after asked for


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


def new_webhook_secret() -> str:
    """A random secret for a webhook run that was given none (setWebhook registers it at every start)."""
    return secrets.token_urlsafe(32)


def run_telegram(
    token: str,
    api_url: str,
    manager: DialogueManager,
    database: sessionmaker[Session],
    webhook: Webhook | None = None,
    access: Access = Access(),
) -> None:
    """Serve the bot until Ctrl-C or SIGTERM, by long polling or, given ``webhook``, as a webhook server, to the
    users ``access`` admits, with its inbox in ``database``; configure logging before calling this."""
    application = build_application(token, api_url, manager, database, access)
    try:
        if webhook is None:
            logger.info("Telegram bot polling %s", api_url)
            application.run_polling(allowed_updates=ALLOWED_UPDATES, close_loop=False)
        else:
            protect_token(webhook.secret)  # PTB logs the setWebhook call, secret included, at DEBUG
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
    database: sessionmaker[Session],
    access: Access = Access(),
    pace: bool = True,
    timeout: float = TIMEOUT_SECONDS,
) -> TelegramApplication:
    """An Application, ready to start, on the Bot API rooted at ``api_url``, answering through ``manager`` the
    users ``access`` admits, with its inbox in ``database`` (the manager's). ``pace``: keep under Telegram's limits
    (30 messages a second overall, 20 a minute per group); off only for benchmarks against a fake API. A 429's
    retry_after is honoured either way. ``timeout``: seconds to wait to connect to the Bot API, to send a call, and
    for its answer (beyond the long poll's own wait); a call that times out is retried like a 5xx."""
    protect_token(token)  # before building: the Bot logs its token-bearing URL as it is created
    root = api_url.rstrip("/")
    bot_id = token.partition(":")[0]  # a token is "<bot id>:<secret>": the inbox is the bot's, not the token's
    inbox = ChannelInbox(inbox_transaction(database, CHANNEL, bot_id), worker_name())
    handlers = Handlers(manager, access, ThreadPoolExecutor(MAX_CONCURRENT_UPDATES, thread_name_prefix="chat"))
    arrived = asyncio.Event()
    serving = Serving(inbox, handlers, manager, arrived, single_process=engine_of(database).dialect.name == "sqlite")
    application: TelegramApplication = (
        ApplicationBuilder()
        .application_class(InboxApplication, {"serving": serving})
        .token(token)
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        # PTB's own httpx client caps the bot at ~200 replies/s on 2 cores (aiohttp_request.py).
        .request(AiohttpRequest(read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout))
        .get_updates_request(PollingRequest(timeout))
        .rate_limiter(_rate_limiter(pace))
        .update_queue(InboxQueue(inbox, arrived))
        .post_init(register_commands)
        .build()
    )
    return application


@dataclass
class Serving:
    """What the worker is made of, and the worker once the Application runs (``InboxApplication``)."""

    inbox: ChannelInbox
    handlers: Handlers
    manager: DialogueManager
    arrived: asyncio.Event
    single_process: bool  # SQLite: one process serves the database
    worker: Worker | None = None


class InboxApplication(TelegramApplication):
    """PTB's Application, which starts the inbox's worker as it starts and stops it as it stops (after the Updater,
    so no update arrives any more), however it is run: ``run_polling``, ``run_webhook``, or by hand."""

    def __init__(self, *, serving: Serving, **options: Any) -> None:
        super().__init__(**options)
        self.serving = serving

    async def initialize(self) -> None:
        await super().initialize()
        await take_over(self.serving.inbox, self.serving.single_process)  # before the Updater takes any update

    async def start(self) -> None:
        await super().start()
        serving = self.serving
        outbox = Outbox(serving.inbox, serving.manager, self.bot)
        worker = Worker(serving.inbox, serving.handlers, outbox, self.bot, serving.arrived)
        await worker.start()  # the oldest rows first: those an earlier run left
        serving.worker = worker

    async def stop(self) -> None:
        if self.serving.worker is not None:
            await self.serving.worker.stop()  # the rows in hand finish or are given back
            self.serving.worker = None
        await super().stop()

    async def shutdown(self) -> None:
        await super().shutdown()
        self.serving.inbox.close()
        self.serving.handlers.threads.shutdown(wait=False)


def _rate_limiter(pace: bool) -> AIORateLimiter:
    if pace:
        return AIORateLimiter(max_retries=RATE_LIMIT_RETRIES)
    return AIORateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=RATE_LIMIT_RETRIES)
