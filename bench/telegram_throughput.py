"""Telegram serving throughput: 100 chats talking at once to `chatbot telegram`'s Application (the real
python-telegram-bot, the shipped model, SQLite) through the loopback fake Bot API of the tests, with and without
micro-batched generation, side by side in one run.

Each chat is a closed loop: it sends a message, and the moment the bot's reply arrives, sends its next one, until
it has sent ``--turns``. Reported: replies per second over the run, and the latency of each reply from the
message being queued at the fake API to the reply being sent (p50 and p95). The fake answers at once and the
per-user rate limit is off, so the Bot API's own limits (which the rate limiter enforces) are not in the figures.

    python bench/telegram_throughput.py [--chats 100] [--turns 5] [--max-batch 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from aiohttp import web

from chatbot.channels.telegram import Access, build_application
from chatbot.cli import default_model_dir
from chatbot.dialogue.generator import Generator
from chatbot.dialogue.manager import DialogueManager
from chatbot.generation import ResponseGenerator
from chatbot.micro_batch import MicroBatchGenerator
from chatbot.storage.engine import open_database
from chatbot.storage.store import sql_transaction

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.channels.fake_bot_api import FakeBotApi

TOKEN = "123:bench"
PROMPTS = ["hello!", "how are you?", "what do you do for fun?", "do you have any pets?", "where are you from?"]


class ClosedLoopApi(FakeBotApi):
    """The fake Bot API, where each chat sends its next message as soon as it gets a reply."""

    def __init__(self, chats: int, turns: int) -> None:
        super().__init__(TOKEN)
        self.left = dict.fromkeys(range(1, chats + 1), turns)
        self.total = chats * turns
        self.asked_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.done = asyncio.Event()

    def ask(self, chat: int) -> None:
        self.left[chat] -= 1
        self.asked_at[chat] = time.perf_counter()
        self.add_text(chat, random.choice(PROMPTS))

    async def _send_message(self, params: dict[str, Any]) -> web.Response:
        response = await super()._send_message(params)
        chat = int(params["chat_id"])
        self.latencies.append(time.perf_counter() - self.asked_at[chat])
        if self.left[chat]:
            self.ask(chat)
        if len(self.latencies) == self.total:
            self.done.set()
        return response


async def serve(generator: Generator, chats: int, turns: int) -> tuple[float, list[float]]:
    """Replies per second and reply latencies for ``chats`` closed-loop chats of ``turns`` messages."""
    with tempfile.TemporaryDirectory() as folder:
        sessions = open_database(f"sqlite:///{Path(folder) / 'bench.sqlite3'}")
        manager = DialogueManager(generator, sql_transaction(sessions))
        async with ClosedLoopApi(chats, turns) as api:
            app = build_application(TOKEN, api.url, manager, Access(per_minute=0), pace=False)
            assert app.updater is not None
            async with app:
                await app.updater.start_polling(poll_interval=0, timeout=1)
                await app.start()
                started = time.perf_counter()
                for chat in api.left:
                    api.ask(chat)
                await asyncio.wait_for(api.done.wait(), timeout=1800)
                elapsed = time.perf_counter() - started
                await app.updater.stop()
                await app.stop()
        sessions.kw["bind"].dispose()
    return len(api.latencies) / elapsed, api.latencies


def milliseconds(values: list[float], share: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[share - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(0)
    generator = ResponseGenerator(default_model_dir(), quantized=True)
    generator.load()
    print(f"# {datetime.now():%Y-%m-%d %H:%M} · command: python {' '.join(sys.argv)}")
    print("| generation | replies/s | latency p50 ms | latency p95 ms | model calls | mean batch |")
    print("|---|---|---|---|---|---|")
    batcher = MicroBatchGenerator(generator, args.max_batch)
    for name, chosen in (("one by one (threads)", generator), (f"micro-batched (≤ {args.max_batch})", batcher)):
        rate, latencies = asyncio.run(serve(chosen, args.chats, args.turns))
        calls = len(batcher.batch_sizes) if chosen is batcher else len(latencies)
        mean = statistics.mean(batcher.batch_sizes) if chosen is batcher else 1.0
        print(
            f"| {name} | {rate:.1f} | {milliseconds(latencies, 50):.1f} | {milliseconds(latencies, 95):.1f} "
            f"| {calls} | {mean:.1f} |"
        )
    batcher.close()


if __name__ == "__main__":
    main()
