"""`chatbot telegram` as users run it: a real process configured by environment variables, talking to the fake Bot
API on 127.0.0.1, answering from a real model, storing turns in SQLite, and stopping cleanly on SIGINT."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.channels.fake_bot_api import FakeBotApi, FakeBotApiThread

TOKEN = "4242:cli-test-token-must-never-be-logged"


def test_chatbot_telegram_answers_stores_and_stops(tiny_model_dir: Path, tmp_path: Path) -> None:
    database = tmp_path / "bot.sqlite3"
    server = FakeBotApiThread(FakeBotApi(TOKEN))
    with server.running() as api:
        environment = {
            **os.environ,
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "CHATBOT_TELEGRAM_API_URL": api.url,
            "CHATBOT_MODEL": str(tiny_model_dir),
            "CHATBOT_DB": f"sqlite:///{database}",
            "CHATBOT_THREADS": "1",
            "NO_PROXY": "127.0.0.1",
        }
        command = [sys.executable, "-m", "chatbot", "-vv", "telegram"]
        process = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)
        try:
            server.do(lambda: api.add_text(7, "do you have any pets?"))
            (reply,) = server.call(lambda: api.wait_for_messages(1, timeout=60.0), timeout=70.0)
        finally:
            process.send_signal(signal.SIGINT)
            _, log = process.communicate(timeout=30)
    assert process.returncode == 0, log
    assert reply.text == "yes, a cat named pepper"
    assert TOKEN not in log
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT role, text FROM messages ORDER BY id").fetchall()
    assert rows == [("user", "do you have any pets?"), ("bot", reply.text)]
