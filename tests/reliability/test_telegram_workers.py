"""Several webhook workers on one real Postgres database: three Applications, each with its own webhook server and
database engine (as three processes would have), receive the messages of many chats round-robin, as a reverse
proxy hands them out. Each message is answered once and each chat's replies come in order, whichever worker
received it; an update POSTed to two workers is stored and answered once. A worker SIGKILLed midway:
bench/telegram_long_runs.py workers (and its test in tests/bench/)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import aiohttp
import pytest

from chatbot.channels.telegram import TelegramApplication, Webhook, build_application
from chatbot.dialogue.generator import EchoGenerator
from chatbot.dialogue.manager import DialogueManager
from chatbot.storage.engine import open_database
from chatbot.storage.store import sql_transaction
from chatbot.storage.transactions import engine_of
from tests.channels.fake_bot_api import FakeBotApi

from .telegram_bot_process import TOKEN, WEBHOOK_SECRET

WAIT_SECONDS = 30.0
pytestmark = pytest.mark.reliability


@asynccontextmanager
async def worker(api: FakeBotApi, database_url: str, port: int) -> AsyncIterator[TelegramApplication]:
    """One webhook worker, as `chatbot telegram --webhook-url ... --port PORT --db URL` runs it."""
    database = open_database(database_url)
    manager = DialogueManager(EchoGenerator(), sql_transaction(database))  # no advisory lock: the inbox orders chats
    app = build_application(TOKEN, api.url, manager, database, pace=False)
    assert app.updater is not None
    hook = Webhook(f"http://127.0.0.1:{port}/hook", WEBHOOK_SECRET, "127.0.0.1", port)
    async with app:
        await app.updater.start_webhook(**hook.options())
        await app.start()
        try:
            yield app
        finally:
            await app.updater.stop()
            await app.stop()
    engine_of(database).dispose()


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for probe in sockets:
        probe.bind(("127.0.0.1", 0))
    ports = [probe.getsockname()[1] for probe in sockets]
    for probe in sockets:
        probe.close()
    return ports


async def post(client: aiohttp.ClientSession, port: int, update: dict[str, object]) -> int:
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    async with client.post(f"http://127.0.0.1:{port}/hook", data=json.dumps(update), headers=headers) as response:
        return response.status


async def test_three_webhook_workers_on_one_postgres_answer_each_message_once_and_each_chat_in_order(
    postgres_url: str,
) -> None:
    chats, per_chat = list(range(500, 520)), 10
    ports = free_ports(3)
    async with FakeBotApi(TOKEN) as api, AsyncExitStack() as stack:
        for port in ports:
            await stack.enter_async_context(worker(api, postgres_url, port))
        client = await stack.enter_async_context(aiohttp.ClientSession())
        sent = 0
        for number in range(per_chat):
            for chat in chats:
                update = api.text_update(chat, f"{chat} says {number}")
                assert await post(client, ports[sent % 3], update) == 200
                if sent % 25 == 0:  # sent again, to another worker, as a proxy retrying a slow worker would
                    assert await post(client, ports[(sent + 1) % 3], update) == 200
                sent += 1
        deadline = time.monotonic() + WAIT_SECONDS
        while len(api.sent) < len(chats) * per_chat and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # time for a duplicate, which must not come
    by_chat: dict[int, list[str]] = {}
    for message in api.sent:
        by_chat.setdefault(message.chat_id, []).append(message.text)
    assert by_chat == {chat: [f"echo: {chat} says {number}" for number in range(per_chat)] for chat in chats}
