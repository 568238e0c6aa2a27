"""Cross-process ordering: two worker processes answering the same chats over one real Postgres never interleave a
conversation's turns, thanks to the advisory lock; the key is stable across processes; SQLite needs no lock."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from chatbot.dialogue.types import Role
from chatbot.storage.engine import create_database_engine, open_database
from chatbot.storage.locking import conversation_lock, lock_key
from chatbot.storage.store import sql_transaction
from chatbot.storage.transactions import engine_of

WORKER = """
import sys, time
from pathlib import Path
from chatbot.dialogue.generator import EchoGenerator
from chatbot.dialogue.manager import DialogueManager
from chatbot.storage.engine import open_database
from chatbot.storage.locking import conversation_lock
from chatbot.storage.store import sql_transaction
from chatbot.storage.transactions import engine_of

class SlowEcho(EchoGenerator):
    def reply(self, history, settings):
        time.sleep(0.03)  # wide enough for the other worker to slip in, were there no lock
        return super().reply(history, settings)

url, name, locked, rendezvous = sys.argv[1], sys.argv[2], sys.argv[3] == "locked", Path(sys.argv[4])
sessions = open_database(url)
lock = conversation_lock(engine_of(sessions)) if locked else None
manager = DialogueManager(SlowEcho(history_turns=1), sql_transaction(sessions), shared_lock=lock)
(rendezvous / f"{name}.ready").touch()
deadline = time.monotonic() + 60
while not (rendezvous / "go").exists() and time.monotonic() < deadline:  # start together, so the two overlap
    time.sleep(0.005)
for n in range(4):
    for user in range(4):
        manager.respond("load", f"u{user}", f"u{user} {name}{n}")
"""


def run_two_workers(url: str, locked: bool, rendezvous: Path) -> list[list[tuple[Role, str]]]:
    engine_of(open_database(url)).dispose()  # migrate once, before the workers race to
    mode = "locked" if locked else "unlocked"
    command = [sys.executable, "-c", WORKER, url]
    workers = [
        subprocess.Popen([*command, name, mode, str(rendezvous)], stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    deadline = time.monotonic() + 120
    while not all((rendezvous / f"{name}.ready").exists() for name in "ab") and time.monotonic() < deadline:
        time.sleep(0.01)
    (rendezvous / "go").touch()
    for worker in workers:
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors
    sessions = open_database(url)
    with sql_transaction(sessions)() as store:
        turns = [[(turn.role, turn.text) for turn in c.turns] for c in store.conversations()]
    engine_of(sessions).dispose()
    return turns


def interleaved(conversation: list[tuple[Role, str]]) -> bool:
    roles = [role for role, _ in conversation]
    answered = all(
        reply == f"echo: {asked}" for (_, asked), (_, reply) in zip(conversation[::2], conversation[1::2], strict=False)
    )
    return roles != [Role.USER, Role.BOT] * (len(conversation) // 2) or not answered


def test_two_processes_keep_each_conversation_in_order(postgres_url: str, tmp_path: Path) -> None:
    conversations = run_two_workers(postgres_url, locked=True, rendezvous=tmp_path)
    assert len(conversations) == 4 and all(len(turns) == 16 for turns in conversations)
    assert not any(interleaved(turns) for turns in conversations)


def test_without_the_lock_they_do_interleave(postgres_url: str, tmp_path: Path) -> None:
    """The control experiment: the same workers, no advisory lock — the test above would catch the mess."""
    conversations = run_two_workers(postgres_url, locked=False, rendezvous=tmp_path)
    assert any(interleaved(turns) for turns in conversations)


def test_the_key_is_stable_and_sqlite_needs_no_lock(tmp_path: Path) -> None:
    assert lock_key("telegram", "42") == lock_key("telegram", "42") != lock_key("telegram", "43")
    assert -(2**63) <= lock_key("terminal", "ann") < 2**63
    engine = create_database_engine(f"sqlite:///{tmp_path / 'chat.sqlite3'}")
    with conversation_lock(engine)("terminal", "ann") as held:
        assert held is None
    engine.dispose()


def test_the_advisory_lock_is_released(postgres_url: str) -> None:
    from sqlalchemy import text

    engine = create_database_engine(postgres_url)
    lock = conversation_lock(engine)
    with lock("telegram", "1"):
        pass
    with engine.connect() as connection:  # a lock still held elsewhere would make this try fail
        assert connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key("telegram", "1")}).scalar()
        connection.execute(text("SELECT pg_advisory_unlock_all()"))
    engine.dispose()
