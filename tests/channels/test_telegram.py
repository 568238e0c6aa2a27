"""The Telegram channel end to end: a real python-telegram-bot Application polling a loopback fake Bot API."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, suppress

import aiohttp
import pytest
from sqlalchemy import select, update

from chatbot.channels.rate_limit import SLOW_DOWN_REPLY
from chatbot.channels.telegram import (
    ERROR_REPLY,
    NON_TEXT_REPLY,
    PRIVATE_REPLY,
    REDACTED,
    TYPING_DELAY_SECONDS,
    Access,
    Webhook,
    build_application,
    new_webhook_secret,
    run_telegram,
    split_message,
)
from chatbot.channels.telegram.worker import MAX_CLAIMS
from chatbot.dialogue.commands import ADMIN_ONLY_TEXT, HELP_TEXT, RESET_TEXT, START_TEXT
from chatbot.dialogue.generator import EchoGenerator, Generated, Generator
from chatbot.dialogue.manager import FALLBACK_REPLY, DialogueManager
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Role, Turn
from chatbot.errors import ChatbotError
from chatbot.storage import models
from chatbot.storage.inbox import inbox_transaction
from tests.database import ScratchDatabase

from .fake_bot_api import FakeBotApi, FakeBotApiThread, Fault, SentMessage, utf16_units

TOKEN = "123456789:FAKE-s3cret-TOKEN-for-tests"
CHAT, OTHER_CHAT, BLOCKING_CHAT = 101, 202, 303


class LongGenerator(EchoGenerator):
    """Answers with 5000 characters of words, more than one Telegram message holds."""

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        return Generated("word " * 1000, 1.0, "long", {})


class TableGenerator(EchoGenerator):
    """Explains a reply with a table of 250 rows that hold markup characters: two Telegram messages' worth."""

    TABLE = "\n".join(f"{row:<4}  </s> & <unk>  {row / 250:.3f}" for row in range(250))

    def explain(self, history: Sequence[Turn], reply: str) -> str | None:
        return self.TABLE


class FailingOnceGenerator(EchoGenerator):
    """Fails on its first reply (as a broken model would), then echoes."""

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        if not self.calls:
            self.calls.append(tuple(history))
            raise RuntimeError("model exploded")
        return super().reply(history, settings)


class SlowEcho(EchoGenerator):
    """Echoes after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        time.sleep(self.seconds)
        return super().reply(history, settings)


class LoopSpyGenerator(EchoGenerator):
    """Echoes, and notes for each reply whether it ran on a thread with a running event loop."""

    def __init__(self) -> None:
        super().__init__()
        self.on_event_loop: list[bool] = []

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        try:
            asyncio.get_running_loop()
            self.on_event_loop.append(True)
        except RuntimeError:
            self.on_event_loop.append(False)
        return super().reply(history, settings)


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi(TOKEN) as fake:
        yield fake


@pytest.fixture
def store() -> ScratchDatabase:
    return ScratchDatabase()


@pytest.fixture
def echo() -> EchoGenerator:
    return EchoGenerator()


def manager_for(generator: Generator, store: ScratchDatabase) -> DialogueManager:
    return DialogueManager(generator, store.transaction)


@asynccontextmanager
async def polling(
    api: FakeBotApi, generator: Generator, store: ScratchDatabase, timeout: float = 5.0
) -> AsyncIterator[None]:
    """Run the bot answering with ``generator`` from ``store`` against ``api`` for the block, with ``timeout`` on
    its Bot API calls. It polls every kind of update, so that it is the handlers, not ``allowed_updates``, that
    keep edits unanswered."""
    app = build_application(TOKEN, api.url, manager_for(generator, store), store.sessions, timeout=timeout)
    assert app.updater is not None
    async with app:
        await app.updater.start_polling(poll_interval=0, timeout=1)
        await app.start()
        try:
            yield
        finally:
            await app.updater.stop()
            await app.stop()


async def serve(api: FakeBotApi, generator: Generator, store: ScratchDatabase, expect: int) -> list[SentMessage]:
    """Answer the queued updates until ``expect`` messages are sent; all messages sent once it stopped."""
    async with polling(api, generator, store):
        await api.wait_for_messages(expect)
    return api.sent


async def test_text_message_gets_the_generated_reply(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase
) -> None:
    api.add_text(CHAT, "hello there")
    assert await serve(api, echo, store, 1) == [SentMessage(CHAT, "echo: hello there")]
    assert {"getMe", "deleteWebhook", "getUpdates"} <= set(api.methods())
    assert "sendChatAction" not in api.methods()  # a reply this fast needs no "typing"


async def test_a_slow_reply_shows_typing_until_it_is_sent(api: FakeBotApi, store: ScratchDatabase) -> None:
    api.add_text(CHAT, "take your time")
    assert await serve(api, SlowEcho(TYPING_DELAY_SECONDS + 0.3), store, 1) == [
        SentMessage(CHAT, "echo: take your time")
    ]
    typing = [call for call in api.calls if call.method == "sendChatAction"]
    assert len(typing) == 1 and typing[0].params == {"chat_id": CHAT, "action": "typing"}
    assert api.methods().index("sendChatAction") < api.methods().index("sendMessage")


@pytest.mark.reliability
async def test_a_send_that_times_out_is_tried_again(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """The Bot API answers the first sendMessage only after the bot's timeout: the bot gives up on it, pauses and
    sends again, and the user gets one reply."""
    api.inject(Fault("sendMessage", 504, "Gateway Timeout", delay=1.0))
    api.add_text(CHAT, "are you there?")
    async with polling(api, echo, store, timeout=0.3):
        assert await api.wait_for_messages(1) == [SentMessage(CHAT, "echo: are you there?")]
    assert api.methods().count("sendMessage") == 2
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert any("Timed out" in warning and "trying again" in warning for warning in warnings)


async def test_the_model_runs_off_the_event_loop(api: FakeBotApi, store: ScratchDatabase) -> None:
    spy = LoopSpyGenerator()
    api.add_text(CHAT, "hello")
    await serve(api, spy, store, 1)
    assert spy.on_event_loop == [False]


async def test_commands_are_answered_by_the_manager(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase
) -> None:
    for command in ("start", "help", "reset", "frobnicate"):
        api.add_command(CHAT, command)
    sent = await serve(api, echo, store, 4)
    expected = [START_TEXT, HELP_TEXT, RESET_TEXT, "Unknown command /frobnicate. Try /help."]
    assert [message.text for message in sent] == expected
    assert echo.calls == []


async def test_reset_starts_a_new_history(api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase) -> None:
    api.add_text(CHAT, "hi")
    api.add_command(CHAT, "reset")
    api.add_text(CHAT, "again")
    sent = await serve(api, echo, store, 3)
    assert [message.text for message in sent] == ["echo: hi", RESET_TEXT, "echo: again"]
    assert echo.calls[-1] == (Turn(Role.USER, "again"),)
    with store.transaction() as transaction:
        assert [len(conversation.turns) for conversation in transaction.conversations()] == [2, 2]


async def test_non_text_messages_get_an_explanation(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase
) -> None:
    api.add_sticker(CHAT)
    api.add_photo(CHAT, caption="look at this")
    sent = await serve(api, echo, store, 2)
    assert sent == [SentMessage(CHAT, NON_TEXT_REPLY), SentMessage(CHAT, NON_TEXT_REPLY)]
    assert echo.calls == []


async def test_edited_messages_are_never_answered(api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase) -> None:
    api.add_edited_text(CHAT, "edited text")
    api.add_edited_text(CHAT, "/help")
    api.add_text(CHAT, "later")  # updates are handled in order, so its answer comes after any to the edits
    assert await serve(api, echo, store, 1) == [SentMessage(CHAT, "echo: later")]


async def test_commands_for_another_bot_are_ignored(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase
) -> None:
    api.add_text(CHAT, "/reset@other_bot")
    api.add_text(CHAT, "/help@test_bot")
    assert await serve(api, echo, store, 1) == [SentMessage(CHAT, HELP_TEXT)]


async def test_chats_keep_separate_histories(api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase) -> None:
    api.add_text(CHAT, "a1")
    api.add_text(OTHER_CHAT, "b1")
    api.add_text(CHAT, "a2")
    sent = await serve(api, echo, store, 3)
    # Chats are served in parallel, so only the order within each chat is fixed.
    assert [message.text for message in sent if message.chat_id == CHAT] == ["echo: a1", "echo: a2"]
    assert [message.text for message in sent if message.chat_id == OTHER_CHAT] == ["echo: b1"]
    (a2_history,) = [call for call in echo.calls if call[-1] == Turn(Role.USER, "a2")]
    assert a2_history == (Turn(Role.USER, "a1"), Turn(Role.BOT, "echo: a1"), Turn(Role.USER, "a2"))
    with store.transaction() as transaction:
        by_chat = {stored.external_id: stored.turns for stored in transaction.conversations()}
    assert set(by_chat) == {str(CHAT), str(OTHER_CHAT)}
    assert [turn.text for turn in by_chat[str(OTHER_CHAT)]] == ["b1", "echo: b1"]


@pytest.mark.reliability
async def test_a_message_telegram_delivers_again_after_a_restart_is_not_answered_twice(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase
) -> None:
    first = api.add_text(CHAT, "hello")
    await serve(api, echo, store, 1)
    api.redeliver(first)  # the bot stopped before confirming it, so Telegram sends it again
    api.add_text(CHAT, "next")
    sent = await serve(api, echo, store, 2)  # a new Application and manager: a restart
    assert [message.text for message in sent] == ["echo: hello", "echo: next"]
    assert len(echo.calls) == 2
    with store.transaction() as transaction:
        (conversation,) = transaction.conversations()
        names = transaction.session.scalars(select(models.User.display_name)).all()
    assert [turn.text for turn in conversation.turns] == ["hello", "echo: hello", "next", "echo: next"]
    assert names == ["Tester"]  # the chat's name, as Telegram gave it


GROUP = -300


async def test_in_a_group_only_mentions_replies_and_commands_are_answered_each_member_apart(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase
) -> None:
    api.add_group_text(GROUP, 1, "just chatting among ourselves")  # not for the bot
    api.add_group_text(GROUP, 1, "@test_bot hello there")
    api.add_group_text(GROUP, 2, "@someone_else look")  # mentions another account
    api.add_group_text(GROUP, 2, "and what about me?", reply_to_bot=True)
    api.add_group_text(GROUP, 1, "@TEST_BOT again")
    api.add_group_text(GROUP, 2, "/export")
    sent = await serve(api, echo, store, 4)
    assert [(message.chat_id, message.text) for message in sent] == [
        (GROUP, "echo: hello there"),
        (GROUP, "echo: and what about me?"),
        (GROUP, "echo: again"),
        (GROUP, "you: and what about me?\nbot: echo: and what about me?"),  # member 2's history only
    ]
    assert echo.calls[-1] == (
        Turn(Role.USER, "hello there"),
        Turn(Role.BOT, "echo: hello there"),
        Turn(Role.USER, "again"),
    )
    with store.transaction() as transaction:
        owners = sorted(conversation.external_id for conversation in transaction.conversations())
        names = sorted(name for name in transaction.session.scalars(select(models.User.display_name)) if name)
    assert owners == [f"{GROUP}:1", f"{GROUP}:2"] and names == ["User1", "User2"]


SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.reliability
async def test_webhook_mode_answers_only_posts_that_carry_the_secret(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase
) -> None:
    port = free_port()
    webhook = Webhook(f"http://127.0.0.1:{port}/telegram-hook", "the_s3cret-value", "127.0.0.1", port)
    app = build_application(TOKEN, api.url, manager_for(echo, store), store.sessions)
    assert app.updater is not None
    async with app, aiohttp.ClientSession() as http:
        await app.updater.start_webhook(**webhook.options())
        await app.start()
        try:
            registered = await api.wait_for_call("setWebhook", timeout=5)
            statuses = []
            for headers in ({}, {SECRET_HEADER: "a-guess"}, {SECRET_HEADER: webhook.secret}):
                update = api.text_update(CHAT, f"sent with {sorted(headers.values())}")
                async with http.post(webhook.url, json=update, headers=headers) as response:
                    statuses.append(response.status)
            sent = await api.wait_for_messages(1)
        finally:
            await app.updater.stop()
            await app.stop()
    assert (registered.params["url"], registered.params["secret_token"]) == (webhook.url, webhook.secret)
    assert statuses == [403, 403, 200]
    assert sent == [SentMessage(CHAT, "echo: sent with ['the_s3cret-value']")] and len(echo.calls) == 1


@pytest.mark.parametrize(
    ("url", "secret", "problem"),
    [
        ("bot.example.com/hook", "ok", "must be an absolute http(s) URL"),
        ("https://bot.example.com/hook", "no spaces allowed", "1-256 characters"),
        ("https://bot.example.com/hook", "", "1-256 characters"),
    ],
)
def test_a_bad_webhook_setting_is_a_clear_error(url: str, secret: str, problem: str) -> None:
    with pytest.raises(ChatbotError, match=re.escape(problem)):
        Webhook(url, secret)


def test_a_generated_webhook_secret_is_one_telegram_accepts() -> None:
    first, second = new_webhook_secret(), new_webhook_secret()
    assert first != second and Webhook("https://bot.example.com/hook", first).secret == first


@pytest.mark.reliability
async def test_429_502_and_403_are_survived_and_every_other_chat_is_served(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """A 429 is waited out (retry_after), a 502 retried, and a chat that blocked the bot (403) is marked inactive
    while the others get their answers."""
    api.inject(Fault("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1, chat_id=CHAT))
    api.inject(Fault("sendMessage", 502, "Bad Gateway", chat_id=OTHER_CHAT))
    blocked = Fault("sendMessage", 403, "Forbidden: bot was blocked by the user", chat_id=BLOCKING_CHAT, times=99)
    api.inject(blocked)
    api.add_text(BLOCKING_CHAT, "bye")
    api.add_text(CHAT, "first")
    api.add_text(OTHER_CHAT, "second")
    sent = await serve(api, echo, store, 2)
    assert sorted((message.chat_id, message.text) for message in sent) == [
        (CHAT, "echo: first"),
        (OTHER_CHAT, "echo: second"),
    ]
    refused = [call for call in api.calls if call.method == "sendMessage" and call.params["chat_id"] == BLOCKING_CHAT]
    assert len(refused) == 1  # a 403 is final: no retry
    with store.transaction() as transaction:
        active = dict(transaction.session.execute(select(models.User.external_id, models.User.active)).all())
    assert active == {str(BLOCKING_CHAT): False, str(CHAT): True, str(OTHER_CHAT): True}
    assert any("marked inactive" in record.getMessage() for record in caplog.records)
    blocked.times = 0  # the user unblocks the bot and writes again, which makes them reachable
    api.add_text(BLOCKING_CHAT, "i'm back")
    await serve(api, echo, store, 3)
    with store.transaction() as transaction:
        assert transaction.session.scalar(
            select(models.User.active).where(models.User.external_id == str(BLOCKING_CHAT))
        )


@pytest.mark.reliability
async def test_allowlist_admin_commands_and_the_rate_limit(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase
) -> None:
    admin = 909
    access = Access(allowed=frozenset({CHAT}), admins=frozenset({admin}), per_minute=2)
    api.add_text(OTHER_CHAT, "let me in")  # not on the list
    api.add_command(CHAT, "stats")  # allowed, but no admin
    api.add_command(admin, "model")
    api.add_text(CHAT, "one")  # CHAT's second message this minute: the last one allowed
    api.add_text(CHAT, "two")  # over the limit: asked to slow down
    api.add_text(CHAT, "three")  # still over: not answered at all
    app = build_application(TOKEN, api.url, manager_for(echo, store), store.sessions, access)
    assert app.updater is not None
    async with app:
        await app.updater.start_polling(poll_interval=0, timeout=1)
        await app.start()
        try:
            await api.wait_for_messages(5)
            await asyncio.sleep(0.3)  # time for a sixth answer, which must not come
        finally:
            await app.updater.stop()
            await app.stop()
    by_chat = {chat: [message.text for message in api.sent if message.chat_id == chat] for chat in (OTHER_CHAT, admin)}
    assert by_chat == {OTHER_CHAT: [PRIVATE_REPLY], admin: ["Model: echo\nDefault decoding: mode greedy."]}
    # Chats are served in parallel: the order is fixed within a chat only.
    assert [message.text for message in api.sent if message.chat_id == CHAT] == [
        ADMIN_ONLY_TEXT,
        "echo: one",
        SLOW_DOWN_REPLY,
    ]
    assert len(api.sent) == 5
    assert [call[-1].text for call in echo.calls] == ["one"]
    assert str(OTHER_CHAT) not in {talk.external_id for talk in store.conversations()}  # a refused user leaves no trace


class OverlapEcho(EchoGenerator):
    """Echoes after a pause and notes the most replies it was ever asked for at the same time."""

    def __init__(self) -> None:
        super().__init__(history_turns=1)
        self.running, self.most_at_once = 0, 0
        self._lock = threading.Lock()

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.02)
        with self._lock:
            self.running -= 1
        return super().reply(history, settings)


async def test_many_chats_run_side_by_side_and_each_keeps_its_order(api: FakeBotApi, store: ScratchDatabase) -> None:
    generator = OverlapEcho()
    chats = [1000 + number for number in range(12)]
    for turn in range(4):
        for chat in chats:
            api.add_text(chat, f"{chat} message {turn}")
    sent = await serve(api, generator, store, 48)
    for chat in chats:
        assert [message.text for message in sent if message.chat_id == chat] == [
            f"echo: {chat} message {turn}" for turn in range(4)
        ]
    assert generator.most_at_once > 1  # other chats did not wait for one chat's reply


async def test_long_reply_is_split_into_telegram_sized_parts(api: FakeBotApi, store: ScratchDatabase) -> None:
    api.add_text(CHAT, "tell me everything")
    sent = await serve(api, LongGenerator(), store, 2)
    assert len(sent) == 2
    assert all(utf16_units(message.text) <= 4096 for message in sent)
    assert " ".join(message.text for message in sent) == ("word " * 1000).strip()


async def test_why_is_shown_in_fixed_width_blocks_split_to_fit(api: FakeBotApi, store: ScratchDatabase) -> None:
    api.add_text(CHAT, "hello")
    await serve(api, TableGenerator(), store, 1)  # a reply to explain
    api.add_command(CHAT, "why")
    sent = (await serve(api, TableGenerator(), store, 3))[1:]
    assert len(sent) == 2 and all(message.parse_mode == "HTML" for message in sent)  # the fake parsed the markup
    assert all(utf16_units(message.text) <= 4096 for message in sent)
    calls = [call for call in api.calls if call.method == "sendMessage"][1:]
    assert all(
        call.params["text"].startswith("<pre>") and "&lt;/s&gt; &amp; &lt;unk&gt;" in call.params["text"]
        for call in calls
    )
    assert "\n".join(message.text for message in sent).endswith(TableGenerator.TABLE)  # cut between rows


@pytest.mark.reliability
async def test_a_failing_handler_is_logged_and_the_bot_goes_on(
    api: FakeBotApi, store: ScratchDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    api.add_text(CHAT, "first")
    api.add_text(CHAT, "second")
    sent = await serve(api, FailingOnceGenerator(), store, 2)
    assert sent == [SentMessage(CHAT, ERROR_REPLY), SentMessage(CHAT, "echo: second")]
    failures = [record for record in caplog.records if record.name.startswith("chatbot.channels.telegram")]
    assert failures and failures[0].levelno == logging.ERROR and failures[0].exc_info is not None


async def test_post_init_registers_the_commands(api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase) -> None:
    app = build_application(TOKEN, api.url + "/", manager_for(echo, store), store.sessions)
    assert app.post_init is not None
    async with app:  # run_polling calls post_init after initialize; here it is done by hand
        await app.post_init(app)
    call = await api.wait_for_call("setMyCommands", timeout=1)
    assert [command["command"] for command in call.params["commands"]] == [
        "start",
        "help",
        "reset",
        "history",
        "mode",
        "beam",
        "temperature",
        "topp",
        "settings",
        "why",
        "export",
        "forget",
    ]


@pytest.mark.reliability
async def test_the_token_never_reaches_the_logs(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api.add_text(CHAT, "hello")
    api.add_command(CHAT, "help")
    await serve(api, echo, store, 2)
    assert any(record.name.startswith("telegram") for record in caplog.records)  # PTB did log at DEBUG
    # PTB logs "Set Bot API URL: http://127.0.0.1:PORT/bot<token>" as the bot is built.
    assert any(REDACTED in record.getMessage() for record in caplog.records)
    assert_token_absent(caplog)


@pytest.mark.reliability
async def test_the_token_is_absent_from_every_debug_log_of_an_exchange(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, as a user debugging the HTTP layer might
    for name in ("aiohttp", "aiohttp.client", "telegram", "httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    api.add_text(CHAT, "hello")
    await serve(api, echo, store, expect=1)
    assert any(record.name.startswith("telegram") for record in caplog.records)  # the debug logs were on
    assert_token_absent(caplog)


def test_building_quiets_the_http_loggers(
    echo: EchoGenerator, store: ScratchDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.NOTSET, logger=name)  # as if nothing had configured them yet
    build_application(TOKEN, "http://127.0.0.1:9", manager_for(echo, store), store.sessions)
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpcore.http11").getEffectiveLevel() == logging.WARNING


@pytest.mark.reliability
def test_the_token_is_redacted_from_tracebacks(
    echo: EchoGenerator, store: ScratchDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    build_application(TOKEN, "http://127.0.0.1:9", manager_for(echo, store), store.sessions)
    try:
        raise ValueError(f"The token `{TOKEN}` was rejected by the server.")
    except ValueError:
        logging.getLogger("chatbot.test").exception("startup failed for %s", TOKEN)
    assert REDACTED in caplog.text
    assert_token_absent(caplog)


def assert_token_absent(caplog: pytest.LogCaptureFixture) -> None:
    secret = TOKEN.split(":", 1)[1]
    assert secret not in caplog.text
    assert all(secret not in record.getMessage() for record in caplog.records)


@pytest.fixture
def own_event_loop() -> Iterator[None]:
    """run_polling uses (and closes) the thread's current event loop, as it does under the CLI."""
    asyncio.set_event_loop(asyncio.new_event_loop())
    yield
    asyncio.set_event_loop(None)


@pytest.mark.usefixtures("own_event_loop")
def test_run_telegram_serves_until_interrupted(echo: EchoGenerator, store: ScratchDatabase) -> None:
    server = FakeBotApiThread(FakeBotApi(TOKEN))
    with server.running() as api:
        server.do(lambda: api.add_edited_text(CHAT, "edited"))
        server.do(lambda: api.add_text(CHAT, "hello"))
        returned = threading.Event()
        stopper = threading.Thread(target=interrupt_after_reply, args=(server, returned))
        stopper.start()
        try:
            run_telegram(TOKEN, api.url + "/", manager_for(echo, store), store.sessions)
        finally:
            returned.set()
            stopper.join(timeout=10)
    assert api.sent == [SentMessage(CHAT, "echo: hello")]
    polls = [call for call in api.calls if call.method == "getUpdates" and "allowed_updates" in call.params]
    assert polls and all(call.params["allowed_updates"] == ["message"] for call in polls)
    assert "setMyCommands" in api.methods()


def interrupt_after_reply(server: FakeBotApiThread, returned: threading.Event) -> None:
    """Press Ctrl-C once the bot has answered (or after 5 s), unless run_telegram has already returned."""
    with suppress(AssertionError):
        server.call(lambda: server.api.wait_for_messages(1, timeout=5))
    if not returned.is_set():
        os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.usefixtures("own_event_loop")
@pytest.mark.reliability
def test_run_telegram_reports_a_rejected_token(echo: EchoGenerator, store: ScratchDatabase) -> None:
    server = FakeBotApiThread(FakeBotApi(TOKEN))
    with server.running() as api, pytest.raises(ChatbotError) as raised:
        run_telegram("999:wrong-secret", api.url, manager_for(echo, store), store.sessions)
    assert "rejected the bot token" in str(raised.value)
    assert "wrong-secret" not in str(raised.value)


# split_message


def test_short_text_is_one_part() -> None:
    assert split_message("  hello world \n") == ["hello world"]


def test_long_text_is_cut_at_spaces() -> None:
    assert split_message("aaa bbb ccc", limit=7) == ["aaa bbb", "ccc"]
    assert split_message("aaaa bbbb cccc", limit=10) == ["aaaa bbbb", "cccc"]


def test_a_newline_is_preferred_to_a_space() -> None:
    # A space at the limit (after "four") loses to the newline in the second half of the part.
    assert split_message("one two three\nfour five", limit=18) == ["one two three", "four five"]
    assert split_message("one\ntwo three four", limit=14) == ["one\ntwo three", "four"]


def test_text_without_whitespace_is_cut_hard() -> None:
    assert split_message("abcdefghij", limit=4) == ["abcd", "efgh", "ij"]


def test_astral_characters_count_as_two_units_and_stay_whole() -> None:
    assert split_message("😀😀😀", limit=4) == ["😀😀", "😀"]
    assert split_message("😀😀😀", limit=5) == ["😀😀", "😀"]  # the third would need units 5 and 6
    assert split_message("a😀b", limit=2) == ["a", "😀", "b"]


def test_blank_text_gives_a_placeholder_part() -> None:
    assert split_message("") == [FALLBACK_REPLY]
    assert split_message(" \n\t ") == [FALLBACK_REPLY]


def test_a_limit_below_one_astral_character_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        split_message("hello", limit=1)


def test_random_texts_split_into_bounded_nonblank_parts_that_keep_every_character() -> None:
    rng = random.Random(7)
    alphabet = ["a", "b", "é", "中", "😀", "👍🏽", " ", " ", "\n", "\t"]
    for _ in range(300):
        text = "".join(rng.choices(alphabet, k=rng.randint(0, 60)))
        limit = rng.randint(2, 12)
        parts = split_message(text, limit)
        assert parts and all(part.strip() and utf16_units(part) <= limit for part in parts)
        if text.strip():
            assert "".join("".join(parts).split()) == "".join(text.split())


@pytest.mark.reliability
async def test_an_update_that_failed_again_and_again_is_given_up(
    api: FakeBotApi, echo: EchoGenerator, store: ScratchDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """A row claimed five times before without being finished (each time its handling failed, or its worker
    died) is marked failed and logged at the next claim, and every other chat is served."""
    inbox = inbox_transaction(store.sessions, "telegram", TOKEN.partition(":")[0])
    with inbox() as pending:
        assert pending.receive(7, str(CHAT), {"update_id": 7, "message": "not a message"})
    with store.sessions.begin() as session:
        session.execute(update(models.InboxEntry).values(claims=MAX_CLAIMS))
    api.add_text(OTHER_CHAT, "hello")
    assert await serve(api, echo, store, 1) == [SentMessage(OTHER_CHAT, "echo: hello")]
    with store.sessions() as session:
        rows = session.execute(select(models.InboxEntry.update_id, models.InboxEntry.state)).all()
    states = {update_id: state for update_id, state in rows}
    assert states[7] == "failed" and f"update 7 failed {MAX_CLAIMS} times; given up" in caplog.text
