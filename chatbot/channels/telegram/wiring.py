"""Wiring: the Application built from the token, the Bot API root, the manager and who may talk, served by long
polling or as a webhook until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from telegram import Update
from telegram.error import InvalidToken, NetworkError
from telegram.ext import (
    AIORateLimiter,
    ApplicationBuilder,
)

from chatbot.channels.aiohttp_request import TIMEOUT_SECONDS, AiohttpRequest
from chatbot.channels.telegram.handlers import Access, Handlers, add_handlers
from chatbot.channels.telegram.messages import TelegramApplication
from chatbot.channels.telegram.redaction import protect_token
from chatbot.channels.telegram.transport import AcknowledgedOrder, Acknowledgements, PollingRequest
from chatbot.dialogue.manager import DialogueManager
from chatbot.errors import ChatbotError

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
    access: Access = Access(),
    pace: bool = True,
    timeout: float = TIMEOUT_SECONDS,
) -> TelegramApplication:
    """An Application, ready to start, on the Bot API rooted at ``api_url``, answering through ``manager`` the
    users ``access`` admits. ``pace``: keep under Telegram's limits (30 messages a second overall, 20 a minute
    per group); off only for benchmarks against a fake API. A 429's retry_after is honoured either way.
    ``timeout``: seconds to wait to connect to the Bot API, to send a call, and for its answer (beyond the long
    poll's own wait); a call that times out is retried like a 5xx."""
    protect_token(token)  # before building: the Bot logs its token-bearing URL as it is created
    root = api_url.rstrip("/")
    acknowledgements = Acknowledgements()
    handlers = Handlers(manager, access)
    application = (
        ApplicationBuilder()
        .token(token)
        .base_url(f"{root}/bot")
        .base_file_url(f"{root}/file/bot")
        # PTB's own httpx client caps the bot at ~200 replies/s on 2 cores (aiohttp_request.py).
        .request(AiohttpRequest(read_timeout=timeout, write_timeout=timeout, connect_timeout=timeout))
        .get_updates_request(PollingRequest(acknowledgements, timeout))
        .rate_limiter(_rate_limiter(pace))
        .concurrent_updates(AcknowledgedOrder(acknowledgements))  # chats in parallel, each chat's messages in order
        .post_init(handlers.on_start)
        .build()
    )
    add_handlers(application, handlers)
    return application


def _rate_limiter(pace: bool) -> AIORateLimiter:
    if pace:
        return AIORateLimiter(max_retries=RATE_LIMIT_RETRIES)
    return AIORateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=RATE_LIMIT_RETRIES)
