"""The Telegram bot under faults: a Bot API that fails in every way it can, a chat whose sends hang, replies the
outbox tries again, and texts no one would type, each against the loopback fake Bot API
(tests/channels/fake_bot_api.py). A bot process killed at every point of a turn: test_telegram_kills.py."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from chatbot.channels.telegram import ERROR_REPLY, RATE_LIMIT_RETRIES, TelegramApplication, build_application, outbox
from chatbot.dialogue.generator import EchoGenerator, Generated, Generator
from chatbot.dialogue.manager import DialogueManager
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Turn
from chatbot.storage import models
from tests.channels.fake_bot_api import MAX_TEXT_UNITS, FakeBotApi, FakeBotApiThread, Fault, utf16_units
from tests.database import ScratchDatabase

from .telegram_bot_process import TOKEN

REPO = Path(__file__).resolve().parents[2]
CHAT, OTHER_CHAT = 101, 202
WAIT_SECONDS = 15.0  # the longest any step may take, a bot process's start included, on a busy machine


# A Bot API that fails in every way it can, and updates no Telegram would send

TIMEOUT = 0.5  # the bot's timeout on Bot API calls in these tests
POLL_SECONDS = 1  # the long poll's wait the bot asks for: getUpdates may take TIMEOUT more before it times out
FAKE_POLL_SECONDS = 0.2  # the fake answers a long poll with nothing after this, so faults are met soon


@asynccontextmanager
async def serving(
    api: FakeBotApi,
    generator: Generator | None = None,
    pace: bool = True,
    timeout: float = TIMEOUT,
    database: ScratchDatabase | None = None,
) -> AsyncIterator[TelegramApplication]:
    """The real application, echoing (or answering with ``generator``), polling ``api`` for every kind of update,
    ``timeout`` on its calls, storing in ``database`` (default: a new one)."""
    database = database or ScratchDatabase()
    manager = DialogueManager(generator or EchoGenerator(), database.transaction)
    app = build_application(TOKEN, api.url, manager, database.sessions, pace=pace, timeout=timeout)
    assert app.updater is not None
    async with app:
        await app.updater.start_polling(poll_interval=0, timeout=POLL_SECONDS)
        await app.start()
        try:
            yield app
        finally:
            await app.updater.stop()
            await app.stop()


async def wait_until(condition: Callable[[], bool], what: str, seconds: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds}s"
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


# No re-fetching


class SlowForSome(EchoGenerator):
    """Echoes, taking a second over messages that say "slow"."""

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        if "slow" in history[-1].text:
            time.sleep(1.0)
        return super().reply(history, settings)


@pytest.mark.reliability
async def test_getupdates_hands_each_update_over_at_most_1_1_times_over_a_run_with_faults() -> None:
    """200 messages from 20 chats while getUpdates fails (5xx, a 429, an answer that comes after the bot gave up
    waiting, which is the one fault that makes Telegram send updates again), sends fail (5xx, a 403) and some
    replies take a second: every update is handed to the bot 1.1 times at most on average (with the offset held
    until each update was handled, as before the inbox, a slow reply had every poll fetch it again), and every
    message but the blocked chat's is answered once."""
    getupdates_faults = [
        Fault("getUpdates", 502, "Bad Gateway"),
        Fault("getUpdates", 429, "Too Many Requests: retry after 1", retry_after=1),
        Fault("getUpdates", 504, "Gateway Timeout", delay=POLL_SECONDS + TIMEOUT + 0.5),
    ]
    async with FakeBotApi(TOKEN, FAKE_POLL_SECONDS) as api, serving(api, SlowForSome(), pace=False):
        api.inject(Fault("sendMessage", 502, "Bad Gateway", chat_id=603, times=2))
        api.inject(Fault("sendMessage", 403, "Forbidden: bot was blocked by the user", chat_id=607, times=999))
        for number in range(10):
            if number in (2, 5, 8):
                api.inject(getupdates_faults[number // 3])
            for chat in range(600, 620):
                api.add_text(chat, f"{'slow ' if chat % 5 == 0 else ''}message {number}")
            await asyncio.sleep(0.3)
        served = [chat for chat in range(600, 620) if chat != 607]
        await wait_until(lambda: all(len(replies(api).get(chat, [])) == 10 for chat in served), "every answer", 60)
        await asyncio.sleep(0.5)  # time for a duplicate, which must not come
    assert all(len(replies(api)[chat]) == 10 for chat in served) and 607 not in replies(api)
    assert len(api.deliveries) == 200
    per_update = sum(api.deliveries.values()) / len(api.deliveries)
    assert per_update <= 1.1, (per_update, api.deliveries.most_common(5))


# One chat's sends hang; replies the outbox tries again


@pytest.mark.reliability
async def test_one_chats_hanging_sends_hold_back_no_other_chat() -> None:
    """One chat's sendMessage hangs 25 s on each of three tries (the bot gives each up after its own timeout, the
    product's 5 s) while 160 messages from 40 other chats arrive: all 160 are answered within 10 s, paced under
    Telegram's 30 messages a second, and the hung chat's reply, put back in the outbox, is delivered within a
    minute, once."""
    hang = Fault("sendMessage", 504, "Gateway Timeout", chat_id=CHAT, times=3, delay=25.0)
    async with FakeBotApi(TOKEN, max_poll_seconds=FAKE_POLL_SECONDS) as api, serving(api, timeout=5.0) as app:
        api.inject(hang)
        api.add_text(CHAT, "hello?")
        await wait_until(lambda: "sendMessage" in api.methods(), "first try at the hung chat")
        started = time.monotonic()
        others = range(1000, 1040)
        for number in range(4):
            for chat in others:
                api.add_text(chat, f"message {number}")
        await wait_until(lambda: sum(len(replies(api).get(chat, [])) for chat in others) == 160, "160 answers")
        answered_in = time.monotonic() - started
        assert answered_in < 10.0, answered_in
        assert all(replies(api)[chat] == [f"echo: message {number}" for number in range(4)] for chat in others)
        await wait_until(lambda: CHAT in replies(api), "the hung chat's reply", seconds=60.0 - answered_in)
        assert hang.times == 0 and replies(api)[CHAT] == ["echo: hello?"]
        assert time.monotonic() - started < 60.0
        await assert_still_serving(api, app, OTHER_CHAT)


def inbox_states(database: ScratchDatabase) -> dict[int, str]:
    """Each inbox row's state, by update id."""
    with database.sessions() as session:
        rows = session.execute(select(models.InboxEntry.update_id, models.InboxEntry.state)).all()
    return {update_id: state for update_id, state in rows}


@pytest.mark.reliability
async def test_the_outbox_tries_a_reply_again_until_it_is_delivered_or_its_time_is_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With the outbox's waits and time limit made short (0.2 s, 8 s; in production 5-60 s, 10 minutes): a reply
    whose chat fails with 502 on six sends (two rounds of three tries) is delivered on the third round; one whose
    chat fails for good is given up after the limit, logged, and marked failed, and no other chat waits for it."""
    monkeypatch.setattr(outbox, "OUTBOX_RETRY_DELAYS", (0.2,))
    monkeypatch.setattr(outbox, "OUTBOX_SECONDS", 8.0)
    database = ScratchDatabase()
    async with FakeBotApi(TOKEN, max_poll_seconds=FAKE_POLL_SECONDS) as api, serving(api, database=database) as app:
        api.inject(Fault("sendMessage", 502, "Bad Gateway", chat_id=11, times=6))
        api.inject(Fault("sendMessage", 502, "Bad Gateway", chat_id=12, times=999))
        late, lost = api.add_text(11, "late"), api.add_text(12, "lost")
        api.add_text(13, "fine")
        await wait_until(lambda: {11, 13} <= set(replies(api)), "the late and the fine reply")
        assert replies(api) == {11: ["echo: late"], 13: ["echo: fine"]}
        await wait_until(lambda: inbox_states(database).get(lost) == "failed", "the lost reply given up", seconds=20)
        assert inbox_states(database)[late] == "delivered"
        assert "reply not delivered in 8 s" in caplog.text and "given up" in caplog.text
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
    database = ScratchDatabase()
    manager = DialogueManager(EchoGenerator(), database.transaction)
    app = build_application(TOKEN, api.url, manager, database.sessions, pace=False)
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
