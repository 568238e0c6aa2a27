"""A bot process for the crash tests: the real Telegram application, SQLite store and manager, answering with an
echo, or (``stuck``) stopping for good inside its first reply so that a test can SIGKILL it there.

Usage: ``python -m tests.reliability.telegram_bot_process API_URL DATABASE_URL echo|stuck [MARKER_FILE]``; the
stuck generator creates MARKER_FILE once the user's turn is stored and the reply is being generated.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from chatbot.channels.telegram import run_telegram
from chatbot.dialogue.generator import EchoGenerator, Generated
from chatbot.dialogue.manager import DialogueManager
from chatbot.dialogue.settings import DecodeSettings
from chatbot.dialogue.types import Turn
from chatbot.storage.engine import open_database
from chatbot.storage.store import sql_transaction

TOKEN = "777:crash-test-token"
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


def main(arguments: list[str]) -> None:
    api_url, database_url, mode, *marker = arguments
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    generator = StuckGenerator(Path(marker[0])) if mode == "stuck" else EchoGenerator()
    run_telegram(TOKEN, api_url, DialogueManager(generator, sql_transaction(open_database(database_url))))


if __name__ == "__main__":
    main(sys.argv[1:])
