"""`chatbot telegram` as users run it: a real process configured by environment variables, talking to the fake Bot
API on 127.0.0.1, answering from a real model, storing turns in SQLite, and stopping cleanly on SIGINT."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.reliability
def test_chatbot_telegram_in_webhook_mode_answers_with_the_secret_only(tiny_model_dir: Path, tmp_path: Path) -> None:
    import json
    import socket
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = "webhook-secret-never-logged"
    url = f"http://127.0.0.1:{port}/hook"
    server = FakeBotApiThread(FakeBotApi(TOKEN))
    with server.running() as api:
        environment = {
            **os.environ,
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "CHATBOT_TELEGRAM_API_URL": api.url,
            "CHATBOT_TELEGRAM_WEBHOOK_SECRET": secret,
            "CHATBOT_MODEL": str(tiny_model_dir),
            "CHATBOT_DB": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
            "CHATBOT_THREADS": "1",
            "NO_PROXY": "127.0.0.1",
        }
        command = [sys.executable, "-m", "chatbot", "-vv", "telegram", "--webhook-url", url, "--port", str(port)]
        process = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)

        def post(text: str, headers: dict[str, str]) -> int:
            body = json.dumps(server.do(lambda: api.text_update(7, text))).encode()
            request = urllib.request.Request(url, body, {"Content-Type": "application/json", **headers})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return int(response.status)
            except urllib.error.HTTPError as error:
                return error.code

        try:
            server.call(lambda: api.wait_for_call("setWebhook", timeout=60.0), timeout=70.0)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # setWebhook comes just before the server listens
                try:
                    status_without = post("who goes there?", {})
                    break
                except urllib.error.URLError:
                    time.sleep(0.1)
            status_with = post("do you have any pets?", {"X-Telegram-Bot-Api-Secret-Token": secret})
            (reply,) = server.call(lambda: api.wait_for_messages(1, timeout=60.0), timeout=70.0)
        finally:
            process.send_signal(signal.SIGINT)
            _, log = process.communicate(timeout=30)
    assert process.returncode == 0, log
    assert (status_without, status_with) == (403, 200)
    assert reply.text == "yes, a cat named pepper"
    assert TOKEN not in log and secret not in log


def test_a_webhook_secret_without_a_webhook_url_is_a_usage_error() -> None:
    from click.testing import CliRunner

    from chatbot.cli import cli

    result = CliRunner().invoke(cli, ["telegram", "--token", TOKEN, "--webhook-secret", "abc"])
    assert result.exit_code == 2 and "--webhook-secret needs --webhook-url" in result.stderr
