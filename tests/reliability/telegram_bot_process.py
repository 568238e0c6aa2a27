"""A bot process for the crash tests: the real Telegram application, SQLite store and manager, answering with an
echo, or (``stuck``) stopping for good inside its first reply so that a test can SIGKILL it there.

Usage: ``python -m tests.reliability.telegram_bot_process API_URL DATABASE_URL echo|stuck [MARKER_FILE]
[--webhook-port PORT]``; the stuck generator creates MARKER_FILE once the user's turn is stored and the reply is
being generated. With ``--webhook-port`` the bot serves a webhook on 127.0.0.1:PORT (path /hook, secret
WEBHOOK_SECRET) instead of polling. The channel logs at INFO, the rest at WARNING.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from chatbot.channels.telegram import Webhook, run_telegram
from chatbot.dialogue.generator import EchoGenerator, Generated
from chatbot.dialogue.manager import DialogueManager
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Turn
from chatbot.storage.engine import open_database
from chatbot.storage.store import sql_transaction

TOKEN = "777:crash-test-token"
WEBHOOK_SECRET = "crash-test-webhook-secret"
STUCK_SECONDS = 60.0  # a stuck process nobody killed (a test that failed early) ends by itself


class StuckGenerator(EchoGenerator):
    """Signals, through ``marker``, that it was asked for a reply, and never gives one."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = marker

    def reply(self, history: Sequence[Turn], settings: DecodeSettings) -> Generated:
        self.marker.touch()
        threading.Event().wait(STUCK_SECONDS)
        raise RuntimeError("the stuck generator was not killed in time")


def webhook_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/hook"


def main(arguments: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("api_url")
    parser.add_argument("database_url")
    parser.add_argument("mode", choices=("echo", "stuck"))
    parser.add_argument("marker", nargs="?", type=Path)
    parser.add_argument("--webhook-port", type=int)
    options = parser.parse_args(arguments)
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
