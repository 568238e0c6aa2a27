"""Telegram serving: 100 chats talking at once to `chatbot telegram`'s Application (the real python-telegram-bot,
the shipped model, SQLite) through the loopback fake Bot API of the tests, side by side in one run: replies
generated one by one in the handler threads, micro-batched in the bot's process, and micro-batched by the model
in a process of its own (as `chatbot telegram` runs it); and, for reference, an echo generator in place of the
model, which leaves the serving path alone (PTB, the manager, SQLite).

The fake API runs in a process of its own, as Telegram's servers are not in the bot's process. Two loads:
  - open loop (the goal's load): the chats send ``--rates`` messages a second between them, taking turns, for
    ``--seconds``, whatever the bot's answers; latency at a load is the figure the goal bounds;
  - closed loop (the ceiling): each chat sends its next message the moment its reply arrives, ``--turns``
    times, so the bot is always saturated; replies per second here is the most the bot can do.
A reply's latency runs from the message being queued at the fake API to the reply reaching it, so it holds
the long poll's pickup and both HTTP calls as well as the handler. The fake answers at once and the per-user rate
limit is off, so the Bot API's own limits (which the rate limiter enforces) are not in the figures. Each run
also reports the CPU time per reply of each process (the bot's, the model's, the fake API's): on a machine with
few cores they share the cores, so their sum per reply bounds the replies per second the machine can serve.

    python bench/telegram_throughput.py [--chats 100] [--rates 500,50] [--seconds 10] [--turns 10] [--max-batch 32]
        [--variants echo,threads,batched,process] [--no-ceiling] [--model DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import inspect
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
from aiohttp import web

from chatbot.channels.telegram import Access, build_application
from chatbot.cli import default_model_dir
from chatbot.dialogue.generator import EchoGenerator, Generator
from chatbot.dialogue.manager import DialogueManager
from chatbot.generation import ResponseGenerator
from chatbot.micro_batch import MicroBatchGenerator
from chatbot.model_process import ModelProcess
from chatbot.storage.engine import open_database
from chatbot.storage.store import sql_transaction
from chatbot.storage.transactions import engine_of

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.channels.fake_bot_api import FakeBotApi

TOKEN = "123:bench"
PROMPTS = ["hello!", "how are you?", "what do you do for fun?", "do you have any pets?", "where are you from?"]


@dataclass(frozen=True)
class Load:
    """What the chats send: ``rate`` messages a second for ``seconds`` (open loop), or, with rate 0, each chat
    its next message when answered, ``turns`` times (closed loop)."""

    chats: int
    rate: float = 0.0
    seconds: float = 0.0
    turns: int = 0

    @property
    def total(self) -> int:
        return round(self.rate * self.seconds) if self.rate else self.chats * self.turns


class LoadApi(FakeBotApi):
    """The fake Bot API, sending the chats' messages by ``load`` and timing each reply."""

    def __init__(self, load: Load) -> None:
        super().__init__(TOKEN)
        self.load = load
        self.left = dict.fromkeys(range(1, load.chats + 1), load.turns)
        self.waiting: dict[int, collections.deque[float]] = collections.defaultdict(collections.deque)
        self.latencies: list[float] = []
        self.done = asyncio.Event()

    def ask(self, chat: int) -> None:
        self.waiting[chat].append(time.perf_counter())
        self.add_text(chat, random.choice(PROMPTS))

    async def run(self) -> float:
        """Send the load's messages and return the seconds until the last reply."""
        started = time.perf_counter()
        if self.load.rate:
            for index in range(self.load.total):
                await asyncio.sleep(max(0.0, started + index / self.load.rate - time.perf_counter()))
                self.ask(index % self.load.chats + 1)
        else:
            for chat in self.left:
                self.left[chat] -= 1
                self.ask(chat)
        await asyncio.wait_for(self.done.wait(), timeout=1800)
        return time.perf_counter() - started

    async def _send_message(self, params: dict[str, Any]) -> web.Response:
        response = await super()._send_message(params)
        chat = int(params["chat_id"])
        self.latencies.append(time.perf_counter() - self.waiting[chat].popleft())
        if self.left[chat]:
            self.left[chat] -= 1
            self.ask(chat)
        if len(self.latencies) == self.load.total:
            self.done.set()
        return response


def api_process(load: Load, pipe: Connection) -> None:
    """The fake API's process: send its URL, wait for "go", run the load, send back (elapsed, latencies, CPU
    seconds it used)."""

    async def main() -> None:
        random.seed(0)
        async with LoadApi(load) as api:
            pipe.send(api.url)
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
            cpu = time.process_time()
            elapsed = await api.run()
            pipe.send((elapsed, api.latencies, time.process_time() - cpu))
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # the bot has stopped polling

    asyncio.run(main())


@dataclass(frozen=True)
class Served:
    """What one run measured: replies per second, each reply's latency (s), and CPU seconds per reply of each
    process (the bot's, the model's where it has its own, the fake API's)."""

    rate: float
    latencies: list[float]
    cpu_per_reply: dict[str, float]


async def serve(generator: Generator, load: Load, model_pid: int | None = None) -> Served:
    """Run the bot (its model in process ``model_pid``, if any) under ``load``."""
    parent, child = multiprocessing.Pipe()
    fake = multiprocessing.get_context("spawn").Process(target=api_process, args=(load, child), daemon=True)
    fake.start()
    with tempfile.TemporaryDirectory() as folder:
        sessions = open_database(f"sqlite:///{Path(folder) / 'bench.sqlite3'}")
        manager = DialogueManager(generator, sql_transaction(sessions))
        app = build_bot(parent.recv(), manager, sessions)
        assert app.updater is not None
        async with app:
            await app.updater.start_polling(poll_interval=0, timeout=1)
            await app.start()
            bot_cpu, model_cpu = time.process_time(), process_cpu(model_pid)
            parent.send("go")
            elapsed, latencies, fake_cpu = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
            cpu = {
                "bot": time.process_time() - bot_cpu,
                "model": process_cpu(model_pid) - model_cpu,
                "fake API": fake_cpu,
            }
            await app.updater.stop()
            await app.stop()
        parent.send("stop")
        engine_of(sessions).dispose()
    fake.join(timeout=10)
    return Served(len(latencies) / elapsed, latencies, {name: value / len(latencies) for name, value in cpu.items()})


def build_bot(api_url: str, manager: DialogueManager, sessions: Any) -> Any:
    """The bot's Application, unpaced, every user unlimited; also with the code before the inbox (run with that
    checkout first on PYTHONPATH, as bench/telegram_inbox.py does), whose build_application took no database."""
    if "database" in inspect.signature(build_application).parameters:
        return build_application(TOKEN, api_url, manager, sessions, Access(per_minute=0), pace=False)
    return build_application(TOKEN, api_url, manager, Access(per_minute=0), pace=False)  # type: ignore[arg-type]


VARIANTS = ("echo", "threads", "batched", "process")


def variants(
    generator: ResponseGenerator, model_process: ModelProcess, max_batch: int, chosen: tuple[str, ...] = VARIANTS
) -> Iterator[tuple[str, Generator, MicroBatchGenerator | None, int | None]]:
    """The ways of answering compared (those ``chosen``), each new: (name, the generator the manager gets, its
    micro-batcher if any, the model's process id if it has its own)."""
    if "echo" in chosen:
        yield "no model (echo): the serving path alone", EchoGenerator(), None, None
    if "threads" in chosen:
        yield "one by one (threads)", generator, None, None
    if "batched" in chosen:
        batcher = MicroBatchGenerator(generator, max_batch)
        yield f"micro-batched (≤ {max_batch}), in the bot's process", batcher, batcher, None
    if "process" in chosen:
        batcher = MicroBatchGenerator(generator, max_batch, model_process.replies)
        yield f"micro-batched (≤ {max_batch}), model process", batcher, batcher, model_process.pid


def process_cpu(pid: int | None) -> float:
    """CPU seconds (user and system) process ``pid`` has used so far, from /proc (Linux); 0 for None."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def milliseconds(values: list[float], share: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[share - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--rates", default="500,50", help="messages per second of each open-loop load")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the open-loop load lasts")
    parser.add_argument("--turns", type=int, default=10, help="messages per chat of the closed-loop load")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"which to run, of {','.join(VARIANTS)}")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the closed-loop load")
    parser.add_argument("--model", type=Path, default=None, help="a model directory (default: the shipped model)")
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    torch.set_num_threads(args.threads)
    generator = ResponseGenerator(args.model or default_model_dir(), quantized=True)
    generator.load()
    loads = {f"open loop, {rate:g} msg/s": Load(args.chats, rate=rate, seconds=args.seconds) for rate in rates}
    if not args.no_ceiling:
        loads["closed loop (ceiling)"] = Load(args.chats, turns=args.turns)
    print(f"# {datetime.now():%Y-%m-%d %H:%M} · command: python {' '.join(sys.argv)}")
    print(
        "| load | generation | replies/s | latency p50 ms | latency p95 ms | model calls | mean batch "
        "| CPU ms/reply: bot · model · fake API |"
    )
    print("|---|---|---|---|---|---|---|---|")
    model_process = ModelProcess(generator.model_dir, generator.decode_config, quantized=True, threads=args.threads)
    for load_name, load in loads.items():
        chosen = tuple(args.variants.split(","))
        for name, answerer, batcher, model_pid in variants(generator, model_process, args.max_batch, chosen):
            served = asyncio.run(serve(answerer, load, model_pid))
            sizes = batcher.batch_sizes if batcher else [1] * len(served.latencies)
            cpu = " · ".join(f"{seconds * 1000:.2f}" for seconds in served.cpu_per_reply.values())
            print(
                f"| {load_name} | {name} | {served.rate:.1f} | {milliseconds(served.latencies, 50):.1f} "
                f"| {milliseconds(served.latencies, 95):.1f} | {len(sizes)} | {statistics.mean(sizes):.1f} | {cpu} |",
                flush=True,
            )
            if batcher:
                batcher.close()
    model_process.close()


if __name__ == "__main__":
    main()
