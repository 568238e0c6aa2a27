"""``chatbot telegram``: serve the bot on Telegram (channels/telegram/), by long polling or a webhook."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from chatbot.cli.options import (
    db_option,
    decode_options,
    model_option,
    persona_option,
    quantize_option,
    session_timeout_option,
    threads_option,
)
from chatbot.cli.wiring import build_manager, open_db, set_threads

DEFAULT_API_URL = "https://api.telegram.org"


@click.command()
@click.option(
    "--token", envvar="TELEGRAM_BOT_TOKEN", show_envvar=True, required=True, help="Bot token from @BotFather."
)
@click.option(
    "--api-url",
    envvar="CHATBOT_TELEGRAM_API_URL",
    show_envvar=True,
    default=DEFAULT_API_URL,
    help="Bot API server root (a self-hosted telegram-bot-api works too).",
)
@click.option(
    "--webhook-url",
    envvar="CHATBOT_TELEGRAM_WEBHOOK_URL",
    show_envvar=True,
    metavar="URL",
    help="Serve a webhook instead of long polling: the public https URL Telegram POSTs updates to.",
)
@click.option(
    "--webhook-secret",
    envvar="CHATBOT_TELEGRAM_WEBHOOK_SECRET",
    show_envvar=True,
    metavar="SECRET",
    help="Secret Telegram sends with every update (A-Z, a-z, 0-9, _, -); a POST without it gets 403. "
    "Default: a new random one at each start (several workers behind one URL need one shared secret).",
)
@click.option("--listen", default="127.0.0.1", show_default=True, help="Webhook mode: address to listen on.")
@click.option("--port", default=8443, show_default=True, type=click.IntRange(1, 65535), help="Webhook mode: port.")
@click.option(
    "--allow",
    "allowed",
    multiple=True,
    type=int,
    metavar="USER_ID",
    envvar="CHATBOT_TELEGRAM_ALLOW",
    show_envvar=True,
    help="Only these Telegram user ids may talk to the bot (repeat the flag; the variable takes a space-separated "
    "list). Default: everyone. Others get a polite refusal.",
)
@click.option(
    "--admin",
    "admins",
    multiple=True,
    type=int,
    metavar="USER_ID",
    envvar="CHATBOT_TELEGRAM_ADMIN",
    show_envvar=True,
    help="Telegram user ids that may use /stats and /model (always allowed to talk).",
)
@click.option(
    "--rate-limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=0),
    metavar="N",
    help="Messages per minute one user may send; more get a polite request to slow down (0: no limit).",
)
@click.option(
    "--max-batch",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="Replies for chats waiting at the same moment are generated in one model call of up to N, by the model in "
    "a process of its own (1: one by one, in the bot's process).",
)
@model_option()
@db_option()
@threads_option(" The model process computes a reply that is alone in its batch on one thread.")
@quantize_option(default=True)
@session_timeout_option()
@persona_option()
@decode_options()
def telegram(
    token: str,
    api_url: str,
    webhook_url: str | None,
    webhook_secret: str | None,
    listen: str,
    port: int,
    allowed: tuple[int, ...],
    admins: tuple[int, ...],
    rate_limit: int,
    max_batch: int,
    model: Path | None,
    db: str | None,
    threads: int,
    quantize: bool,
    session_timeout: str,
    persona: str | None,
    **decode: Any,
) -> None:
    """Run the bot on Telegram until Ctrl-C: long polling, or with --webhook-url a webhook server on
    --listen:--port (put it behind an https reverse proxy). Each chat has its own history in the database (in
    groups, each member, and only messages that mention or reply to the bot are answered); /help lists the
    commands (/reset, /mode, /beam, /temperature, /topp, /settings, /why, /export, /forget; /stats and /model for
    --admin users). --allow limits who may talk to the bot, --rate-limit how fast. Every update is stored in the
    database before Telegram is told it arrived, and answered from there: a bot stopped or killed mid-turn finishes
    at its next start, each message answered once, and a reply Telegram did not take is tried again for 10 minutes.
    Several webhook processes (each its own --port, behind one reverse proxy, with one --webhook-secret) may share
    a Postgres --db: each message is answered once, each chat's in order."""
    from chatbot.channels.telegram import Access, Webhook, new_webhook_secret, run_telegram

    if webhook_secret is not None and webhook_url is None:
        raise click.UsageError("--webhook-secret needs --webhook-url")
    webhook = None
    if webhook_url is not None:
        webhook = Webhook(webhook_url, webhook_secret or new_webhook_secret(), listen, port)
    set_threads(threads)
    access = Access(frozenset(allowed), frozenset(admins), rate_limit)
    with contextlib.ExitStack() as resources:
        batching = (max_batch, threads, resources) if max_batch > 1 else None
        database = open_db(db)
        # The inbox answers each chat's messages one at a time across processes (a row is leased to one worker,
        # and only a chat's oldest unfinished row can be claimed), so no turn holds a connection for a lock.
        manager = build_manager(
            model, database, decode, quantize, session_timeout, batching, cross_process_lock=False, persona=persona
        )
        run_telegram(token, api_url, manager, database, webhook, access)
