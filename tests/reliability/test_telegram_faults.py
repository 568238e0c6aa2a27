"""The Telegram bot under faults: a bot process killed mid-turn (polling, or serving a webhook, which Telegram
never calls again for an update it was answered 200 for), a Bot API that fails in every way it can, and texts no
one would type, each against the loopback fake Bot API (tests/channels/fake_bot_api.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from chatbot.channels.telegram import ERROR_REPLY, RATE_LIMIT_RETRIES, TelegramApplication, build_application
from chatbot.dialogue.generator import EchoGenerator, Generated, Generator
from chatbot.dialogue.manager import DialogueManager
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Turn
from chatbot.storage import models
from chatbot.storage.engine import open_database
from chatbot.storage.locking import conversation_lock
from chatbot.storage.store import sql_transaction
from chatbot.storage.transactions import engine_of
from tests.channels.fake_bot_api import MAX_TEXT_UNITS, FakeBotApi, FakeBotApiThread, Fault, SentMessage, utf16_units
from tests.database import ScratchDatabase

from .telegram_bot_process import TOKEN, WEBHOOK_SECRET, webhook_url

REPO = Path(__file__).resolve().parents[2]
CHAT, OTHER_CHAT = 101, 202
WAIT_SECONDS = 15.0  # the longest any step may take, a bot process's start included, on a busy machine


# SIGKILL during a turn, then a restart


@contextmanager
def bot_process(
    api_url: str, database: Path, mode: str, log: Path, marker: Path | None = None, webhook_port: int | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A bot process (telegram_bot_process.py) serving the fake API from ``database``, logging to ``log``, polling
    or serving a webhook on ``webhook_port``. It is stopped with SIGINT at the end of the block (SIGKILL if it does
    not stop), unless the block killed it."""
    command = [sys.executable, "-m", "tests.reliability.telegram_bot_process", api_url, f"sqlite:///{database}", mode]
    command += [str(marker)] if marker is not None else []
    command += ["--webhook-port", str(webhook_port)] if webhook_port is not None else []
    environment = {**os.environ, "NO_PROXY": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
    with log.open("a") as output:
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            assert process.wait(WAIT_SECONDS) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(WAIT_SECONDS)


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL: no handler runs, no connection is closed politely, nothing is flushed."""
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(WAIT_SECONDS) == -signal.SIGKILL


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {WAIT_SECONDS}s"
        time.sleep(0.05)


def turns(database: Path, chat: int) -> list[tuple[str, str, str | None]]:
    """The chat's stored turns, oldest first: role, text, and the Telegram message id (of a reply: once sent)."""
    query = """SELECT messages.role, messages.text, messages.channel_message_id FROM messages
        JOIN conversations ON conversations.id = messages.conversation_id
        JOIN users ON users.id = conversations.user_id
        WHERE users.channel = 'telegram' AND users.external_id = ? ORDER BY messages.id"""
    with sqlite3.connect(database) as connection:
        return list(connection.execute(query, (str(chat),)).fetchall())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def post_update(port: int, update: dict[str, Any]) -> int:
    """POST ``update`` to the webhook of the bot on ``port`` with the secret, as Telegram does, once the bot
    listens (within WAIT_SECONDS); the HTTP status it answered."""
    request = urllib.request.Request(
        webhook_url(port),
        json.dumps(update).encode(),
        {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET},
    )
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy the environment names
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            with direct.open(request, timeout=WAIT_SECONDS) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code
        except urllib.error.URLError:  # not listening yet: the bot answers what was left unanswered first
            assert time.monotonic() < deadline, f"the webhook on port {port} was not listening within {WAIT_SECONDS}s"
            time.sleep(0.05)


def write(server: FakeBotApiThread, chat: int, text: str, webhook_port: int | None) -> None:
    """A user writes: the message is queued for getUpdates, or, to a bot serving a webhook, POSTed to it at once
    (and Telegram, answered 200, will never send it again)."""
    api = server.api
    if webhook_port is None:
        server.do(lambda: api.add_text(chat, text))
    else:
        assert post_update(webhook_port, server.do(lambda: api.text_update(chat, text))) == 200


def restart_and_check(
    server: FakeBotApiThread, database: Path, log: Path, question: str, webhook_port: int | None = None
) -> None:
    """Start a fresh echo bot on the same database and fake API (which, when polling, delivers again what the
    killed bot had not confirmed): the question is answered exactly once, by the start-up pass over messages left
    unanswered (as a reply to it, before any update is taken), its reply stored once and marked delivered, and a
    message from another chat written after the restart is served too."""
    api = server.api
    with bot_process(api.url, database, "echo", log, webhook_port=webhook_port):
        server.call(lambda: api.wait_for_messages(1, timeout=WAIT_SECONDS), timeout=WAIT_SECONDS + 5)
        write(server, OTHER_CHAT, "anyone home?", webhook_port)
        server.call(lambda: api.wait_for_messages(2, timeout=WAIT_SECONDS), timeout=WAIT_SECONDS + 5)
        time.sleep(0.5)  # time for a duplicate, which must not come
    reply = f"echo: {question}"
    assert sorted(api.sent, key=lambda sent: sent.chat_id) == [
        SentMessage(CHAT, reply),
        SentMessage(OTHER_CHAT, "echo: anyone home?"),
    ], log.read_text()
    (asked, answered) = turns(database, CHAT)
    assert asked[:2] == ("user", question) and asked[2] is not None
    assert answered[:2] == ("bot", reply) and answered[2] is not None  # delivered, as the Telegram message it was
    assert [turn[:2] for turn in turns(database, OTHER_CHAT)] == [
        ("user", "anyone home?"),
        ("bot", "echo: anyone home?"),
    ]
    calls = server.do(lambda: list(api.calls))
    *_, late = (call for call in calls if call.method == "sendMessage" and call.params["chat_id"] == CHAT)
    assert late.params["reply_parameters"]["message_id"] == int(asked[2])
    assert "answered 1 of 1 messages left unanswered" in log.read_text()


def test_a_bot_killed_while_generating_answers_the_message_once_after_a_restart(tmp_path: Path) -> None:
    database, log, marker = tmp_path / "bot.sqlite3", tmp_path / "bot.log", tmp_path / "generating"
    question = "are you still there?"
    server = FakeBotApiThread(FakeBotApi(TOKEN))
    with server.running() as api:
        server.do(lambda: api.add_text(CHAT, question))
        with bot_process(api.url, database, "stuck", log, marker) as bot:
            wait_for(marker.exists, "reply being generated")
            assert [turn[:2] for turn in turns(database, CHAT)] == [("user", question)]  # stored, no reply yet
            kill(bot)
        assert api.sent == []
        restart_and_check(server, database, log, question)


def test_a_bot_killed_while_sending_the_stored_reply_sends_it_once_after_a_restart(tmp_path: Path) -> None:
    """The Bot API holds the sendMessage and never answers it: for all the bot knows, the reply was not sent."""
    database, log = tmp_path / "bot.sqlite3", tmp_path / "bot.log"
    question = "what did you say?"
    server = FakeBotApiThread(FakeBotApi(TOKEN))
    with server.running() as api:
        server.do(lambda: api.inject(Fault("sendMessage", 504, "never answered", chat_id=CHAT, hold=True)))
        server.do(lambda: api.add_text(CHAT, question))
        with bot_process(api.url, database, "echo", log) as bot:
            server.call(lambda: api.wait_for_call("sendMessage", timeout=WAIT_SECONDS), timeout=WAIT_SECONDS + 5)
            assert [turn[:2] for turn in turns(database, CHAT)] == [("user", question), ("bot", f"echo: {question}")]
            assert turns(database, CHAT)[1][2] is None  # stored, not delivered
            kill(bot)
        assert api.sent == []
        restart_and_check(server, database, log, question)


def test_a_webhook_bot_killed_while_generating_answers_the_message_once_after_a_restart(tmp_path: Path) -> None:
    """The webhook answers Telegram 200 before the update is handled, so Telegram never sends it again: the bot,
    restarted, finds the stored question unanswered and answers it."""
    database, log, marker = tmp_path / "bot.sqlite3", tmp_path / "bot.log", tmp_path / "generating"
    question, port = "are you still there?", free_port()
    server = FakeBotApiThread(FakeBotApi(TOKEN))
    with server.running() as api:
        with bot_process(api.url, database, "stuck", log, marker, webhook_port=port) as bot:
            write(server, CHAT, question, port)
            wait_for(marker.exists, "reply being generated")
            assert [turn[:2] for turn in turns(database, CHAT)] == [("user", question)]  # stored, no reply yet
            kill(bot)
        assert api.sent == []
        restart_and_check(server, database, log, question, webhook_port=port)


def test_a_webhook_bot_killed_while_sending_the_stored_reply_sends_it_once_after_a_restart(tmp_path: Path) -> None:
    database, log = tmp_path / "bot.sqlite3", tmp_path / "bot.log"
    question, port = "what did you say?", free_port()
    server = FakeBotApiThread(FakeBotApi(TOKEN))
    with server.running() as api:
        server.do(lambda: api.inject(Fault("sendMessage", 504, "never answered", chat_id=CHAT, hold=True)))
        with bot_process(api.url, database, "echo", log, webhook_port=port) as bot:
            write(server, CHAT, question, port)
            server.call(lambda: api.wait_for_call("sendMessage", timeout=WAIT_SECONDS), timeout=WAIT_SECONDS + 5)
            assert [turn[:2] for turn in turns(database, CHAT)] == [("user", question), ("bot", f"echo: {question}")]
            assert turns(database, CHAT)[1][2] is None  # stored, not delivered
            kill(bot)
        assert api.sent == []
        restart_and_check(server, database, log, question, webhook_port=port)


# Messages left unanswered, answered at start


class FailingEcho(EchoGenerator):
    """Echoes; fails while ``fail`` is set, as a process stopped mid-generation leaves a message unanswered."""

    fail = False

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        if self.fail:
            raise RuntimeError("stopped mid-generation")
        return super().reply(history, settings)


def leave_unanswered(
    manager: DialogueManager, generator: FailingEcho, never: Sequence[str], unsent: Sequence[str]
) -> None:
    """As an earlier run left them: a message from each of ``never`` stored with no reply, and one from each of
    ``unsent`` answered but never sent (each the Telegram message 5 of its chat)."""
    generator.fail = True
    for key in never:
        with pytest.raises(RuntimeError):
            manager.respond("telegram", key, f"hello from {key}", "5")
    generator.fail = False
    for key in unsent:
        manager.respond("telegram", key, f"hello from {key}", "5")


async def test_at_start_a_chat_that_blocked_the_bot_or_cannot_be_reached_costs_no_other_chat_its_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Five chats (one a group member's) have a message left unanswered: the chat that blocked the bot (403) is
    marked unreachable, the one whose sends keep failing (5xx) keeps its message for the next start, and the
    three others are answered, each as a reply to its message."""
    database, generator = ScratchDatabase(), FailingEcho()
    manager = DialogueManager(generator, database.transaction)
    leave_unanswered(manager, generator, never=["11", "12", "-500:61"], unsent=["13", "14"])
    async with FakeBotApi(TOKEN) as api:
        api.inject(Fault("sendMessage", 403, "Forbidden: bot was blocked by the user", chat_id=12, times=99))
        api.inject(Fault("sendMessage", 502, "Bad Gateway", chat_id=14, times=3))  # every try: 2.5 s of pauses
        app = build_application(TOKEN, api.url, manager, timeout=TIMEOUT)
        with caplog.at_level(logging.INFO, "chatbot.channels.telegram"):
            async with app:  # run_polling and run_webhook call post_init after initialize; here it is done by hand
                assert app.post_init is not None
                await app.post_init(app)
    assert sorted((sent.chat_id, sent.text) for sent in api.sent) == [
        (-500, "echo: hello from -500:61"),
        (11, "echo: hello from 11"),
        (13, "echo: hello from 13"),
    ]
    late = [call.params for call in api.calls if call.method == "sendMessage"]
    assert all(params["reply_parameters"]["message_id"] == 5 for params in late)
    assert "answered 3 of 5 messages left unanswered" in caplog.text
    assert [message.external_id for message in manager.unanswered("telegram")] == ["14"]  # 12 is unreachable now
    with database.transaction() as store:
        assert not store.session.scalar(select(models.User.active).where(models.User.external_id == "12"))


async def test_workers_started_together_answer_each_message_left_unanswered_once(postgres_url: str) -> None:
    """Two bot processes on one Postgres database start at once: one answers what was left unanswered while the
    other waits, then finds nothing left."""
    engines = [open_database(postgres_url) for _ in range(3)]
    generator = FailingEcho()
    managers = [
        DialogueManager(generator, sql_transaction(sessions), shared_lock=conversation_lock(engine_of(sessions)))
        for sessions in engines
    ]
    chats = [str(chat) for chat in range(21, 27)]
    leave_unanswered(managers[0], generator, never=chats[:3], unsent=chats[3:])
    try:
        async with FakeBotApi(TOKEN) as api:
            workers = [build_application(TOKEN, api.url, manager, pace=False) for manager in managers[1:]]
            async with workers[0], workers[1]:
                await asyncio.gather(*(worker.post_init(worker) for worker in workers if worker.post_init))
    finally:
        for sessions in engines:
            engine_of(sessions).dispose()
    assert sorted(replies(api).items()) == [(int(chat), [f"echo: hello from {chat}"]) for chat in chats]


# A Bot API that fails in every way it can, and updates no Telegram would send

TIMEOUT = 0.5  # the bot's timeout on Bot API calls in these tests
POLL_SECONDS = 1  # the long poll's wait the bot asks for: getUpdates may take TIMEOUT more before it times out
FAKE_POLL_SECONDS = 0.2  # the fake answers a long poll with nothing after this, so faults are met soon


@asynccontextmanager
async def serving(
    api: FakeBotApi, generator: Generator | None = None, pace: bool = True
) -> AsyncIterator[TelegramApplication]:
    """The real application, echoing (or answering with ``generator``), polling ``api`` for every kind of update,
    TIMEOUT on its calls."""
    manager = DialogueManager(generator or EchoGenerator(), ScratchDatabase().transaction)
    app = build_application(TOKEN, api.url, manager, pace=pace, timeout=TIMEOUT)
    assert app.updater is not None
    async with app:
        await app.updater.start_polling(poll_interval=0, timeout=POLL_SECONDS)
        await app.start()
        try:
            yield app
        finally:
            await app.updater.stop()
            await app.stop()


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {WAIT_SECONDS}s"
        await asyncio.sleep(0.02)


def replies(api: FakeBotApi) -> dict[int, list[str]]:
    """Each chat's messages from the bot, in order."""
    by_chat: dict[int, list[str]] = {}
    for message in api.sent:
        by_chat.setdefault(message.chat_id, []).append(message.text)
    return by_chat


async def assert_still_serving(api: FakeBotApi, app: TelegramApplication, chat: int) -> None:
    assert app.running and app.updater is not None and app.updater.running
    api.add_text(chat, "still there?")
    await wait_until(lambda: replies(api).get(chat) == ["echo: still there?"], "answer after the faults")


async def test_5xx_429_storms_timeouts_and_403_on_every_call_leave_every_other_chat_served() -> None:
    """getUpdates fails with each 5xx, an HTML page, a 429 storm and a timeout, one after another; meanwhile
    sendMessage fails for some chats with each 5xx, a timeout, a 429 storm the rate limiter rides out, or 403 for
    good (a user who blocked the bot). Every chat but the blocking one gets its answer, once."""
    get_updates_faults = [
        Fault("getUpdates", 500, "Internal Server Error"),
        Fault("getUpdates", 502, "Bad Gateway"),
        Fault("getUpdates", 503, "Service Unavailable"),
        Fault("getUpdates", 504, "Gateway Timeout"),
        Fault("getUpdates", 200, "", body="<html><body>Please log in to the Wi-Fi</body></html>"),  # not JSON
        Fault("getUpdates", 429, "Too Many Requests: retry after 1", retry_after=1, times=2),
        Fault("getUpdates", 504, "Gateway Timeout", delay=POLL_SECONDS + TIMEOUT + 0.5),  # the bot times out first
    ]
    send_faults = [
        Fault("sendMessage", 500, "Internal Server Error", chat_id=11),
        Fault("sendMessage", 502, "Bad Gateway", chat_id=12),
        Fault("sendMessage", 503, "Service Unavailable", chat_id=13),
        Fault("sendMessage", 504, "Gateway Timeout", chat_id=14),
        Fault("sendMessage", 504, "Gateway Timeout", chat_id=15, delay=TIMEOUT * 3),  # times out
        Fault(
            "sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1, chat_id=16, times=RATE_LIMIT_RETRIES
        ),
        Fault("sendMessage", 403, "Forbidden: bot was blocked by the user", chat_id=17, times=99),
    ]
    async with FakeBotApi(TOKEN, max_poll_seconds=FAKE_POLL_SECONDS) as api, serving(api) as app:
        for fault in send_faults:
            api.inject(fault)
            api.add_text(fault.chat_id or 0, f"hello from {fault.chat_id}")
        for chat, fault in enumerate(get_updates_faults, start=21):
            api.inject(fault)
            await wait_until(lambda fault=fault: fault.times == 0, f"{fault}")
            api.add_text(chat, f"hello from {chat}")  # answered only once the bot got over the fault
            await wait_until(lambda chat=chat: chat in replies(api), f"answer to chat {chat} after {fault}")
        served = [*range(11, 17), *range(21, 21 + len(get_updates_faults))]
        await wait_until(lambda: set(served) <= set(replies(api)), "answer to every chat")
        await asyncio.sleep(0.5)  # time for a duplicate, which must not come
        assert replies(api) == {chat: [f"echo: hello from {chat}"] for chat in served}
        assert all(fault.times == 0 for fault in send_faults[:-1])
        await assert_still_serving(api, app, OTHER_CHAT)


def raw_message(chat_id: int, **fields: Any) -> dict[str, Any]:
    """A message update's fields, from a private chat, with ``fields`` replacing (None: removing) the usual ones."""
    message = {"message_id": 1, "date": int(time.time()), "chat": {"id": chat_id, "type": "private"}, "text": "hi"}
    message["from"] = {"id": chat_id, "is_bot": False, "first_name": "Odd"}
    message.update(fields)
    return {"message": {name: value for name, value in message.items() if value is not None}}


MALFORMED = [
    raw_message(31, chat=None),
    raw_message(32, text=None),
    raw_message(33, **{"from": None}),
    raw_message(34, **{"from": None, "text": None}),
    raw_message(35, date=None),
    raw_message(36, date="yesterday"),
    raw_message(37, message_id="not a number"),
    raw_message(38, text=42),
    raw_message(39, text=["a", "list"]),
    raw_message(40, chat="a string"),
    raw_message(41, chat={"id": 41}),
    raw_message(42, entities="not a list"),
    raw_message(43, entities=[{"type": "bot_command", "offset": 5, "length": 99}]),
    raw_message(44, **{"from": "someone"}),
    raw_message(2**70, message_id=2**70),  # ids far beyond any Telegram hands out
    {"message": "just a string"},
    {"message": None},
    {"message": {}},
    {"frobnicated_thing": {"a": 1}},  # a kind of update this bot has never heard of
    {},
]


async def test_malformed_updates_are_survived_and_every_other_chat_is_served(caplog: pytest.LogCaptureFixture) -> None:
    """Updates with fields missing or of the wrong type, of unknown kinds, empty, and with huge ids, between the
    messages of ordinary chats: every ordinary chat gets its answer, once, no chat more than one message, and
    nothing fails outside the bot's own handlers (python-telegram-bot logs no error of its own)."""
    async with FakeBotApi(TOKEN, max_poll_seconds=FAKE_POLL_SECONDS) as api, serving(api, pace=False) as app:
        ordinary = []
        for number, fields in enumerate(MALFORMED):
            api.add_raw(fields, update_id=2**62 if number == len(MALFORMED) // 2 else None)
            ordinary.append(1000 + number)
            api.add_text(ordinary[-1], f"ordinary message {number}")
        await wait_until(lambda: set(ordinary) <= set(replies(api)), "answer to every ordinary chat")
        await asyncio.sleep(0.5)  # time for more answers, which must not come
        answered = replies(api)
        assert {chat: answered[chat] for chat in ordinary} == {
            chat: [f"echo: ordinary message {chat - 1000}"] for chat in ordinary
        }
        assert all(len(messages) == 1 for messages in answered.values()), answered
        await assert_still_serving(api, app, OTHER_CHAT)
    ptb_errors = [record for record in caplog.records if record.name.startswith("telegram")]
    assert not [record.getMessage() for record in ptb_errors if record.levelno >= logging.ERROR]


class HangingEcho(EchoGenerator):
    """Echoes; a reply to "hang" only once ``release`` is set (``hanging`` is set meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.hanging, self.release = threading.Event(), threading.Event()

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        if history[-1].text == "hang":
            self.hanging.set()
            self.release.wait(WAIT_SECONDS)
        return super().reply(history, settings)


def offsets(api: FakeBotApi) -> list[int]:
    return [int(call.params.get("offset", 0)) for call in api.calls if call.method == "getUpdates"]


async def test_an_update_is_confirmed_only_once_handled_and_a_hanging_one_holds_back_no_other_chat() -> None:
    """While a reply hangs, getUpdates never confirms its update (a restart would bring it again), yet every
    other chat's messages, written meanwhile, are fetched and answered; once the reply is sent, it is confirmed."""
    generator = HangingEcho()
    async with FakeBotApi(TOKEN, max_poll_seconds=FAKE_POLL_SECONDS) as api, serving(api, generator) as app:
        hanging = api.add_text(CHAT, "hang")
        try:
            await wait_until(generator.hanging.is_set, "reply being made")
            for chat in range(300, 306):
                api.add_text(chat, f"meanwhile in {chat}")
                await wait_until(lambda chat=chat: chat in replies(api), f"answer to chat {chat}")
            assert CHAT not in replies(api) and max(offsets(api)) == hanging
        finally:
            generator.release.set()
        await wait_until(lambda: CHAT in replies(api) and max(offsets(api)) > hanging, "reply, confirmed")
        assert all(len(messages) == 1 for messages in replies(api).values())
        await assert_still_serving(api, app, OTHER_CHAT)


# Fuzzed texts

TEXTS = st.one_of(
    st.text(max_size=60),  # anything: control characters, RTL, emoji, combining marks...
    st.text(st.characters(categories=["Cc", "Cf", "Mn", "Me", "Zs", "Zl", "Zp"]), max_size=20),  # nothing visible
    st.sampled_from(["", " ", "\n\t\r ", "\u200f\u200e", "\x00", "/", "/ ", "@test_bot", "\ufeff"]),
    st.builds(
        lambda unit, length: (unit * length)[:length],
        st.sampled_from(["a", "😀", "e\u0301", "שלום ", "👍🏽 ", "\n", "a " * 7 + "\n", "\u0000x"]),
        st.sampled_from([4095, 4096, 4097, 8193, 100_000]),
    ),
)


@contextmanager
def bot_on(server: FakeBotApiThread) -> Iterator[None]:
    """The real application, echoing, running on the fake API's own event loop for the block."""
    api = server.api
    app = build_application(TOKEN, api.url, DialogueManager(EchoGenerator(), ScratchDatabase().transaction), pace=False)
    assert app.updater is not None

    async def start() -> None:
        await app.initialize()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=POLL_SECONDS)
        await app.start()

    async def stop() -> None:
        assert app.updater is not None
        await app.updater.stop()
        await app.stop()
        await app.shutdown()

    server.call(start)
    try:
        yield
    finally:
        server.call(stop)


def test_fuzzed_texts_get_nonblank_replies_that_fit_telegram() -> None:
    """Whatever the text (Telegram itself would cut it at 4096 units, and refuse it empty), the bot answers with
    messages that are neither blank nor over 4096 UTF-16 units, and never with its error reply."""
    server = FakeBotApiThread(FakeBotApi(TOKEN, max_poll_seconds=FAKE_POLL_SECONDS))
    chats = iter(range(5000, 10**6))
    with server.running() as api, bot_on(server):

        @given(TEXTS)
        def check(text: str) -> None:
            chat = next(chats)
            server.do(lambda: (api.add_text(chat, text), api.add_text(chat, "done?")))
            server.call(lambda: wait_until(lambda: replies(api).get(chat, [])[-1:] == ["echo: done?"], "answer"))
            answer = replies(api)[chat][:-1]
            assert answer and ERROR_REPLY not in answer
            assert all(part.strip() and utf16_units(part) <= MAX_TEXT_UNITS for part in answer)
            calls = server.do(lambda: list(api.calls))
            sends = sum(call.method == "sendMessage" and call.params["chat_id"] == chat for call in calls)
            assert sends == len(answer) + 1  # the fake refused none

        check()
