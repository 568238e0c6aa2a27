"""A bot process for the crash tests: the real Telegram application, SQLite store and manager, answering with an
echo, or (``stuck``) stopping for good inside its first reply so that a test can SIGKILL it there.

Usage: ``python -m tests.reliability.telegram_bot_process API_URL DATABASE_URL echo|stuck [MARKER_FILE]
[--webhook-port PORT] [--kill-at receive|after-commit|deliver]``; the stuck generator creates MARKER_FILE once the
user's turn is stored and the reply is being generated. With ``--webhook-port`` the bot serves a webhook on
127.0.0.1:PORT (path /hook, secret WEBHOOK_SECRET) instead of polling. The channel logs at INFO, the rest at WARNING.

``--kill-at`` makes the process SIGKILL itself at a point of the first update's way that no test can reach from
outside (the classes are patched in this process only):
  - ``receive``: the update was fetched (or POSTed), and ``InboxStore.receive`` is called to store it: the
    process dies before it runs, so the update is in no database and Telegram was not told it arrived.
  - ``after-commit``: ``InboxQueue.put`` stored the update and its transaction committed: the process dies as
    ``put`` returns, before PTB moves the getUpdates offset or the webhook answers 200, and before the worker
    could claim the row.
  - ``deliver``: the reply was sent and Telegram answered it, and ``InboxStore.deliver`` is called to mark the row
    delivered: the process dies before it runs.
Either way the process's exit status is -9 (SIGKILL), which is how a test knows the point was reached.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from telegram import Update

from chatbot.channels.telegram import Webhook, run_telegram
from chatbot.channels.telegram.inbox import InboxQueue
from chatbot.dialogue.generator import EchoGenerator, Generated
from chatbot.dialogue.manager import DialogueManager
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Turn
from chatbot.storage.engine import open_database
from chatbot.storage.inbox import InboxStore
from chatbot.storage.store import sql_transaction

TOKEN = "777:crash-test-token"
WEBHOOK_SECRET = "crash-test-webhook-secret"
STUCK_SECONDS = 60.0  # a stuck process nobody killed (a test that failed early) ends by itself
KILL_POINTS = ("receive", "after-commit", "deliver")


class StuckGenerator(EchoGenerator):
    """Signals, through ``marker``, that it was asked for a reply, and never gives one."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = marker

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        self.marker.touch()
        threading.Event().wait(STUCK_SECONDS)
        raise RuntimeError("the stuck generator was not killed in time")


def die(*_: Any) -> NoReturn:
    """SIGKILL this process, as the kernel's OOM killer or a power cut would: no handler runs, nothing is flushed."""
    os.kill(os.getpid(), signal.SIGKILL)
    threading.Event().wait(STUCK_SECONDS)  # the signal is delivered before the kill returns; never reached
    raise RuntimeError("SIGKILL did not kill the process")


def kill_at(point: str) -> None:
    """Patch the inbox so that this process SIGKILLs itself at ``point`` (one of KILL_POINTS; module docstring)."""
    put = InboxQueue.put

    async def put_then_die(queue: InboxQueue, item: object) -> None:
        await put(queue, item)  # returns once the transaction storing the update committed
        if isinstance(item, Update):
            die()

    owner, method, replacement = {
        "receive": (InboxStore, "receive", die),
        "after-commit": (InboxQueue, "put", put_then_die),
        "deliver": (InboxStore, "deliver", die),
    }[point]
    setattr(owner, method, replacement)


def webhook_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/hook"


def main(arguments: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("api_url")
    parser.add_argument("database_url")
    parser.add_argument("mode", choices=("echo", "stuck"))
    parser.add_argument("marker", nargs="?", type=Path)
    parser.add_argument("--webhook-port", type=int)
    parser.add_argument("--kill-at", choices=KILL_POINTS)
    options = parser.parse_args(arguments)
    if options.kill_at is not None:
        kill_at(options.kill_at)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("chatbot.channels.telegram").setLevel(logging.INFO)
    generator = StuckGenerator(options.marker) if options.mode == "stuck" else EchoGenerator()
    database = open_database(options.database_url)
    manager = DialogueManager(generator, sql_transaction(database))
    port = options.webhook_port
    webhook = None if port is None else Webhook(webhook_url(port), WEBHOOK_SECRET, "127.0.0.1", port)
    run_telegram(TOKEN, options.api_url, manager, database, webhook)


if __name__ == "__main__":
    main(sys.argv[1:])
