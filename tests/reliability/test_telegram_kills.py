"""A Telegram bot process SIGKILLed at every point of an update's way through the inbox (inbox.py, worker.py,
outbox.py), polling and serving a webhook, then started again on the same SQLite file and the same loopback Bot API
(tests/channels/fake_bot_api.py). The points, in order:

  - ``receive``: fetched (or POSTed), not yet committed to the inbox. Telegram was not told it arrived: polling
    fetches it again (the offset never moved), and Telegram POSTs it again to a webhook that gave no 200.
  - ``after-commit``: committed, not yet confirmed to Telegram, which sends it again: it is recognised, not stored
    twice.
  - ``generating``: claimed, the user's turn stored, the reply being generated.
  - ``sending``: the reply stored, its sendMessage in flight, never answered (nor carried out) by the Bot API.
  - ``deliver``: the reply sent and answered by Telegram, the row not yet marked delivered: sent again.

At ``receive``, ``after-commit`` and ``deliver`` the process kills itself (telegram_bot_process.py ``--kill-at``);
at ``generating`` and ``sending`` the test kills it, once the bot is seen there. Every wait is for something seen
(a marker file, a Bot API call, an exit status), bounded by WAIT_SECONDS.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.channels.fake_bot_api import FakeBotApi, FakeBotApiThread, Fault

from .telegram_bot_process import TOKEN, WEBHOOK_SECRET, webhook_url

REPO = Path(__file__).resolve().parents[2]
CHAT, OTHER_CHAT = 101, 202
QUESTION, REPLY = "are you still there?", "echo: are you still there?"
WAIT_SECONDS = 15.0  # the longest any step may take, a bot process's start included, on a busy machine
FAKE_POLL_SECONDS = 0.2  # the fake answers a long poll with nothing after this, so a stopping bot stops soon

RECEIVE, AFTER_COMMIT, GENERATING, SENDING, DELIVER = "receive", "after-commit", "generating", "sending", "deliver"
SELF_KILLED = (RECEIVE, AFTER_COMMIT, DELIVER)  # telegram_bot_process.py --kill-at
UNCONFIRMED = (RECEIVE, AFTER_COMMIT)  # Telegram was not told the update arrived, and sends it again
# What the killed bot left: the question's inbox rows' states, its turns (roles), and the replies Telegram took.
LEFT_AT_KILL = {
    RECEIVE: ([], [], 0),
    AFTER_COMMIT: (["received"], [], 0),
    GENERATING: (["received"], ["user"], 0),
    SENDING: (["answered"], ["user", "bot"], 0),
    DELIVER: (["answered"], ["user", "bot"], 1),
}
MODES = pytest.mark.parametrize("webhook", [False, True], ids=["polling", "webhook"])


# A bot process, killed and started again


@contextmanager
def bot_process(
    api_url: str,
    database: Path,
    log: Path,
    mode: str = "echo",
    marker: Path | None = None,
    webhook_port: int | None = None,
    kill_at: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A bot process (telegram_bot_process.py) serving the fake API from ``database``, logging to ``log``, polling
    or serving a webhook on ``webhook_port``, killing itself at ``kill_at``. It is stopped with SIGINT at the end of
    the block, and must stop cleanly, unless it was killed."""
    command = [sys.executable, "-m", "tests.reliability.telegram_bot_process", api_url, f"sqlite:///{database}", mode]
    command += [str(marker)] if marker is not None else []
    command += ["--webhook-port", str(webhook_port)] if webhook_port is not None else []
    command += ["--kill-at", kill_at] if kill_at is not None else []
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


def killed(process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for the process to die of SIGKILL (its own ``--kill-at``, or the test's ``kill``)."""
    try:
        status = process.wait(WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the bot was not killed within {WAIT_SECONDS}s:\n{log.read_text()}") from None
    assert status == -signal.SIGKILL, log.read_text()


def kill(process: subprocess.Popen[bytes], log: Path) -> None:
    """SIGKILL: no handler runs, no connection is closed politely, nothing is flushed."""
    os.kill(process.pid, signal.SIGKILL)
    killed(process, log)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {WAIT_SECONDS}s"
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def post_update(port: int, update: dict[str, Any]) -> int | None:
    """POST ``update`` to the webhook of the bot on ``port`` with the secret, as Telegram does, once the bot
    listens (within WAIT_SECONDS): the HTTP status it answered, or None when it died before answering."""
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
        except urllib.error.URLError as error:
            if not isinstance(error.reason, ConnectionRefusedError):
                return None  # the connection broke with the request sent
            # Not listening yet: the bot starts its webhook server after it opened the database.
            assert time.monotonic() < deadline, f"the webhook on port {port} was not listening within {WAIT_SECONDS}s"
            time.sleep(0.05)
        except (http.client.HTTPException, ConnectionError):  # the bot died with the request read, unanswered
            return None


def write(server: FakeBotApiThread, chat: int, text: str, webhook_port: int | None) -> None:
    """A user writes: the message is queued for getUpdates, or, to a bot serving a webhook, POSTed to it at once
    (and Telegram, answered 200, never sends it again)."""
    api = server.api
    if webhook_port is None:
        server.do(lambda: api.add_text(chat, text))
    else:
        assert post_update(webhook_port, server.do(lambda: api.text_update(chat, text))) == 200


# What the bot left in the database and sent


def turns(database: Path, chat: int) -> list[tuple[str, str, str | None]]:
    """The chat's stored turns, oldest first: role, text, and the Telegram message id (of a reply: once sent)."""
    query = """SELECT messages.role, messages.text, messages.channel_message_id FROM messages
        JOIN conversations ON conversations.id = messages.conversation_id
        JOIN users ON users.id = conversations.user_id
        WHERE users.channel = 'telegram' AND users.external_id = ? ORDER BY messages.id"""
    with sqlite3.connect(database) as connection:
        return list(connection.execute(query, (str(chat),)).fetchall())


def inbox_states(database: Path, chat: int) -> list[str]:
    """The states of the chat's inbox rows, oldest first."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT state FROM inbox WHERE chat = ? ORDER BY id", (str(chat),)).fetchall()
    return [state for (state,) in rows]


def replies(server: FakeBotApiThread, chat: int) -> list[str]:
    """The texts of the messages the Bot API sent to ``chat`` (a held sendMessage sent nothing)."""
    return server.do(lambda: [sent.text for sent in server.api.sent if sent.chat_id == chat])


# The two runs


def run_until_killed(server: FakeBotApiThread, tmp_path: Path, point: str, port: int | None) -> dict[str, Any] | None:
    """A bot answers the question until it is SIGKILLed at ``point``; what it left is checked against LEFT_AT_KILL.
    In webhook mode, the question's update as POSTed (None when polling)."""
    api, database, log, marker = server.api, tmp_path / "bot.sqlite3", tmp_path / "bot.log", tmp_path / "generating"
    if point == SENDING:
        server.do(lambda: api.inject(Fault("sendMessage", 504, "never answered", chat_id=CHAT, hold=True)))
    update = None
    if port is None:
        server.do(lambda: api.add_text(CHAT, QUESTION))
    mode = "stuck" if point == GENERATING else "echo"
    kill_at = point if point in SELF_KILLED else None
    with bot_process(api.url, database, log, mode, marker, port, kill_at) as bot:
        if port is not None:
            update = server.do(lambda: api.text_update(CHAT, QUESTION))
            answer = post_update(port, update)
            assert answer == (None if point in UNCONFIRMED else 200), log.read_text()  # None: the bot died first
        if point == GENERATING:
            wait_for(marker.exists, "reply being generated")
            kill(bot, log)
        elif point == SENDING:
            server.call(lambda: api.wait_for_call("sendMessage", timeout=WAIT_SECONDS), timeout=WAIT_SECONDS + 5)
            kill(bot, log)
        else:
            killed(bot, log)
    states, roles, sent = LEFT_AT_KILL[point]
    assert inbox_states(database, CHAT) == states
    assert [turn[0] for turn in turns(database, CHAT)] == roles
    assert all(turn[2] is None for turn in turns(database, CHAT) if turn[0] == "bot")  # not marked delivered
    assert replies(server, CHAT) == [REPLY] * sent
    return update


def restart_and_check(
    server: FakeBotApiThread, tmp_path: Path, point: str, port: int | None, update: dict[str, Any] | None, sends: int
) -> None:
    """A fresh echo bot on the same database and fake API finishes the question: one user turn, one bot turn marked
    delivered, the reply sent ``sends`` times in all, the question's inbox row delivered; a message from another chat
    written after the restart is answered once; and the bot stops cleanly. Polling, a question the killed bot did
    not confirm is fetched again; in webhook mode, where the killed bot gave no 200 for ``update``, Telegram POSTs
    it again."""
    api, database, log = server.api, tmp_path / "bot.sqlite3", tmp_path / "bot.log"
    with bot_process(api.url, database, log, webhook_port=port):
        if port is not None and update is not None and point in UNCONFIRMED:
            assert post_update(port, update) == 200, log.read_text()
        wait_for(lambda: len(replies(server, CHAT)) >= sends, "reply after the restart")
        write(server, OTHER_CHAT, "anyone home?", port)
        wait_for(lambda: bool(replies(server, OTHER_CHAT)), "answer to the other chat")
        delivered = ["delivered"]
        wait_for(lambda: inbox_states(database, CHAT) == inbox_states(database, OTHER_CHAT) == delivered, "delivery")
    assert replies(server, CHAT) == [REPLY] * sends, log.read_text()
    assert replies(server, OTHER_CHAT) == ["echo: anyone home?"]
    (asked, answered) = turns(database, CHAT)
    assert asked[:2] == ("user", QUESTION) and asked[2] is not None
    assert answered[:2] == ("bot", REPLY) and answered[2] is not None  # delivered, as the Telegram message it was
    assert [turn[:2] for turn in turns(database, OTHER_CHAT)] == [
        ("user", "anyone home?"),
        ("bot", "echo: anyone home?"),
    ]
    text = log.read_text()
    left = "1 updates left unfinished by an earlier run are finished first" in text
    assert left == (point != RECEIVE)  # the killed bot left the row, but for the kill before the commit
    if point == AFTER_COMMIT:  # fetched again, or POSTed again: recognised
        assert "was received before; not stored again" in text
    if point in (GENERATING, SENDING, DELIVER):  # claimed before: the late reply quotes the question
        calls = server.do(lambda: list(api.calls))
        *_, late = (call for call in calls if call.method == "sendMessage" and call.params["chat_id"] == CHAT)
        assert late.params["reply_parameters"]["message_id"] == int(asked[2])


# The tests


@pytest.mark.reliability
@MODES
@pytest.mark.parametrize("point", [RECEIVE, AFTER_COMMIT, GENERATING, SENDING])
def test_a_bot_killed_at_any_point_before_the_reply_reached_telegram_answers_once_after_a_restart(
    tmp_path: Path, point: str, webhook: bool
) -> None:
    """Killed before the update was stored, after it was stored, while generating, or while sending (the Bot API
    never carried the sendMessage out): the restarted bot sends the reply exactly once."""
    port = free_port() if webhook else None
    server = FakeBotApiThread(FakeBotApi(TOKEN, max_poll_seconds=FAKE_POLL_SECONDS))
    with server.running():
        update = run_until_killed(server, tmp_path, point, port)
        restart_and_check(server, tmp_path, point, port, update, sends=1)


@pytest.mark.reliability
@MODES
def test_a_bot_killed_between_telegram_taking_the_reply_and_marking_it_delivered_sends_it_twice(
    tmp_path: Path, webhook: bool
) -> None:
    """The one point where exactly-once is impossible: Telegram took the sendMessage and answered it, and the bot
    died before committing the delivered mark. The restarted bot finds the reply answered, not delivered, and
    nothing tells a message that reached Telegram from one that did not (the Bot API has no idempotency key), so it
    sends it again: the user sees the reply twice. The window is one local commit long, after Telegram's answer.
    Everything else is still once: one user turn, one bot turn (marked delivered after the restart), one row."""
    port = free_port() if webhook else None
    server = FakeBotApiThread(FakeBotApi(TOKEN, max_poll_seconds=FAKE_POLL_SECONDS))
    with server.running():
        update = run_until_killed(server, tmp_path, DELIVER, port)
        restart_and_check(server, tmp_path, DELIVER, port, update, sends=2)
